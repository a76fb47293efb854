"""Reject with a reason, in Slack: right after a Reject click's ack a dialog asks why, and what it is told is
stored before the ack and handed to the bus, where the agent plans once more with it (runtime.handlers.revisions).

The click itself rejects at once, as it always has; the dialog is opened in a background task within the 3 s a
trigger id lives, and skipping it (or sending it empty) changes nothing.
"""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.models.blocks import InputBlock, PlainTextInputElement, PlainTextObject
from slack_sdk.models.views import View

from bot.bootstrap import Aios
from bot.rejection_reasons import MAX_REASON, accept_reason
from bot.slack_metrics import VIEW_SUBMISSIONS
from bot.slack_payloads import SlackId, parse_payload, payload_type, problems
from runtime.messages import ReviseRejected
from runtime.transport import TransportError
from storage.ids import format_id, parse_key
from storage.records import Approval

log = structlog.get_logger(__name__)

REASON_CALLBACK_ID = "aios_reject_reason"
REASON_BLOCK_ID = "reason"
REASON_INPUT_ID = "value"
REASON_LABEL = "Tell the agent what would be right, e.g. refund only the broken item, $40"
MAX_TITLE = 24  # a modal's title, in characters


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Who(_Shape):
    id: SlackId


class _Input(_Shape):
    value: str | None = None  # Slack sends null for an input left empty


class _State(_Shape):
    values: dict[str, dict[str, _Input]]


class _SubmittedView(_Shape):
    private_metadata: str = Field(default="", max_length=3000)
    state: _State


class _Submission(_Shape):
    """A `view_submission` of the reason dialog: who sent it, for which approval, and what it says."""

    user: _Who
    view: _SubmittedView

    @property
    def text(self) -> str:
        return self.view.state.values.get(REASON_BLOCK_ID, {}).get(REASON_INPUT_ID, _Input()).value or ""


class _RejectClick(_Shape):
    """What opening the dialog needs of a Reject click: its trigger id, who clicked, and the approval its button
    names."""

    trigger_id: str = Field(min_length=1, max_length=200)
    user: _Who
    actions: list[dict[str, Any]] = Field(min_length=1)


def reason_dialog(approval_ref: str) -> dict[str, Any]:
    """The modal asking why ``approval_ref`` was rejected; its one input is optional (Skip, or Send it empty)."""
    title = f"Why reject {approval_ref}?"
    return View(
        type="modal",
        callback_id=REASON_CALLBACK_ID,
        private_metadata=approval_ref,
        title=PlainTextObject(text=title if len(title) <= MAX_TITLE else "Why reject it?"),
        submit=PlainTextObject(text="Send"),
        close=PlainTextObject(text="Skip"),
        blocks=[
            InputBlock(
                block_id=REASON_BLOCK_ID,
                label=PlainTextObject(text=REASON_LABEL),
                element=PlainTextInputElement(
                    action_id=REASON_INPUT_ID, multiline=True, max_length=MAX_REASON
                ),
                optional=True,
            )
        ],
    ).to_dict()


def ask_reason(aios: Aios, body: dict[str, Any]) -> None:
    """After a Reject click's ack: open the reason dialog in the background (a trigger id lasts 3 s)."""
    try:
        click = _RejectClick.model_validate(body)
    except ValidationError as exc:
        log.warning("reject_without_trigger", type=payload_type(body), problems=problems(exc))
        return
    approval_id = parse_key(str(click.actions[0].get("value", "")), "AP")
    if approval_id is None:
        return  # the click itself was refused for the same reason, and logged
    aios.background.spawn(_open(aios, click.trigger_id, approval_id, click.user.id), name="reason_dialog")


async def _open(aios: Aios, trigger_id: str, approval_id: int, user: str) -> None:
    """Open the dialog, unless the click is known to be refused (its clicker may not decide the approval, or
    it was decided otherwise): their reason could not be kept, so they are not asked for it."""
    async with aios.units() as uow:
        approval = await uow.get(Approval, approval_id)
    if approval is None or not await aios.handlers.revisions.may_reject(approval, user):
        log.info("reason_dialog_not_offered", approval=approval_id, user=user)
        return
    view = reason_dialog(format_id("AP", approval_id))
    try:
        await aios.handlers.transport.open_view(trigger_id, view)
    except TransportError as exc:
        log.error("reason_dialog_not_opened", approval=view.get("private_metadata"), error=str(exc))


def register_rejection(app: AsyncApp, aios: Aios) -> None:
    @app.view(REASON_CALLBACK_ID)
    async def on_reason(ack: AsyncAck, body: dict[str, Any]) -> None:
        """The reason is checked and stored before the ack (a refusal is shown under the input, and the dialog
        stays open); an empty one is nothing to do."""
        VIEW_SUBMISSIONS.inc()
        submission = parse_payload(_Submission, body, body)
        if submission is None:
            await ack()
            return
        approval_id = parse_key(submission.view.private_metadata, "AP")
        if approval_id is None:
            log.warning("reason_with_foreign_metadata", metadata=submission.view.private_metadata[:80])
            await ack()
            return
        user = submission.user.id
        answer = await accept_reason(
            aios.units,
            approval_id,
            user,
            submission.text,
            may_reject=aios.handlers.revisions.may_reject,
            received_by=aios.lease.id,
        )
        if answer is None:
            await ack()
            return
        if answer.reason_id is None:
            problem = answer.problem or "That reason could not be kept; try again."
            await ack(response_action="errors", errors={REASON_BLOCK_ID: problem})
            return
        await ack()
        aios.submit(ReviseRejected(approval_id, user, answer.channel, answer.reason_id))
