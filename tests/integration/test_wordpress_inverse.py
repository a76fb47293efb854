"""Against a real WordPress: an edit's Done message offers Undo only when what it replaced can be put back, and an
untitled post gets its empty title back."""

from __future__ import annotations

from pathlib import Path

import httpx

from bot.undo import ask_undo
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.wordpress_server import WordPressServer
from tests.integration.test_undo import undo_buttons
from tests.integration.test_wordpress import PERMISSIVE, actions, slash, wordpress_aios


def post_directly(site: WordPressServer, slug: str, title: str, body: str) -> None:
    """A post written in WordPress itself, which holds what our actions would not propose."""
    response = httpx.post(
        f"{site.url}/",
        params={"rest_route": "/wp/v2/posts"},
        json={"slug": slug, "title": title, "content": body, "status": "draft"},
        auth=(site.user, site.app_password),
        timeout=10,
    )
    response.raise_for_status()


async def test_an_edit_of_an_untitled_post_is_undone_to_no_title(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    post_directly(wordpress, "untitled-notes", "", "<p>notes</p>")
    aios = await wordpress_aios(database_url, slack_api, clock, tmp_path, wordpress, policy=PERMISSIVE)
    try:
        await slash(aios, 'update post untitled-notes title "Notes"')
        [update] = await actions(aios)
        assert update.status == "executed"
        [(_, value)] = undo_buttons(slack_api)
        answer = await ask_undo(aios, value, "U0BOB")
        assert answer.filing is not None and answer.filing.inverse.model_dump()["title"] == ""
    finally:
        await aios.close()


async def test_an_edit_whose_old_body_cannot_be_put_back_is_done_without_an_undo(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    post_directly(wordpress, "long-read", "Long read", "<p>" + "word " * 12_000 + "</p>")
    aios = await wordpress_aios(database_url, slack_api, clock, tmp_path, wordpress, policy=PERMISSIVE)
    try:
        await slash(aios, 'update post long-read body "<p>Short now.</p>"')
        [update] = await actions(aios)
        assert update.status == "executed"
        done = [
            c.params["text"] for c in slack_api.calls_to("chat.postMessage") if "Done" in c.params["text"]
        ]
        assert len(done) == 1 and "Update post long-read" in done[0]
        assert undo_buttons(slack_api) == []
    finally:
        await aios.close()
