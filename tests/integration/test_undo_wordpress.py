"""`/aios undo` against a real WordPress (PHP, MariaDB) on the packaged policy: an edit is put back by an update
an editor approves; an undo WordPress is certain to refuse is not filed, and may be asked for again."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from bot.bootstrap import Aios
from bot.undo import ask_undo, file_undo
from runtime.messages import DecideApproval
from storage.records import Approval, UndoRequest
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.wordpress_server import WordPressServer
from tests.integration.conftest import CHANNEL, REQUESTER
from tests.integration.test_wordpress import EDITOR, SPRING, actions, slash, wordpress_aios

TEAMMATE = "U0BOB"


async def edited(aios: Aios) -> int:
    """The post's title changed by an update the editor approved; the update's action id."""
    await aios.registry.execute(SPRING, "seed-spring")
    await slash(aios, 'update post spring-lookbook title "Spring lookbook 2027"')
    await approve_waiting(aios)
    [update] = await actions(aios)
    assert (update.name, update.status) == ("wordpress.update", "executed")
    assert update.id is not None
    return update.id


async def approve_waiting(aios: Aios) -> None:
    async with aios.units() as uow:
        [approval] = (await uow.session.exec(select(Approval).where(Approval.status == "pending"))).all()
    assert approval.id is not None and approval.approver_roles == ["editor"]
    await aios.process(DecideApproval(approval.id, EDITOR, approve=True, channel=CHANNEL))


def title(wordpress: WordPressServer) -> str:
    [post] = wordpress.posts(slug="spring-lookbook")
    return str(post["title"]["raw"])  # type: ignore[index]


async def test_an_edit_is_put_back_once_an_editor_approves_its_undo(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    aios = await wordpress_aios(database_url, slack_api, clock, tmp_path, wordpress)
    try:
        update = await edited(aios)
        assert title(wordpress) == "Spring lookbook 2027"

        answer = await ask_undo(aios, f"A-{update}", TEAMMATE)
        assert answer.filing is not None
        assert answer.text.startswith(f"Asking to undo A-{update} with Update post spring-lookbook: title to")
        assert await file_undo(aios, answer.filing) is None
        assert title(wordpress) == "Spring lookbook 2027"  # post edits need an editor, undos too

        await approve_waiting(aios)

        assert title(wordpress) == "Spring lookbook"
        [_, undo] = await actions(aios)
        assert (undo.name, undo.params, undo.status, undo.undoes_action_id) == (
            "wordpress.update",
            {"slug": "spring-lookbook", "title": "Spring lookbook", "body": None, "excerpt": None},
            "executed",
            update,
        )
    finally:
        await aios.close()


async def test_an_undo_wordpress_would_refuse_is_not_filed_and_may_be_asked_again(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    aios = await wordpress_aios(database_url, slack_api, clock, tmp_path, wordpress)
    try:
        update = await edited(aios)
        wordpress.delete_post("spring-lookbook")  # someone removed it in WordPress since

        first = await ask_undo(aios, f"A-{update}", TEAMMATE)
        assert first.filing is not None
        refused = await file_undo(aios, first.filing)

        assert refused == (
            f"The undo of A-{update} was not filed: WordPress has no post with the slug 'spring-lookbook'."
        )
        assert len(await actions(aios)) == 1  # nothing proposed, nobody asked
        second = await ask_undo(aios, f"A-{update}", REQUESTER)
        assert second.filing is not None  # the refused request ended: a new one may be filed
        async with aios.units() as uow:
            requests = (await uow.session.exec(select(UndoRequest))).all()
        assert [(r.attempt, r.requested_by) for r in requests] == [(0, TEAMMATE), (1, REQUESTER)]
    finally:
        await aios.close()
