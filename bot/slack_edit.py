"""Edit, then approve, in Slack: the Edit button of an approval card opens a dialog of the action's parameters
(bot.action_forms), and its submission is checked, stored before the ack, and handed to the bus.

The click is acked at once and the dialog opened right after in a background task, within the 3 s a
trigger id lives. A submission that does not fit the action's model is answered with the errors under the
inputs, and the dialog stays open; one that fits is stored before the ack, so an acked edit survives a crash.
"""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field
from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.action_forms import (
    EDIT_CALLBACK_ID,
    edit_view,
    field_specs,
    notice_view,
    read_submission,
    validation_errors,
)
from bot.blocks import EDIT_ACTION_ID
from bot.bootstrap import Aios
from bot.slack_metrics import BLOCK_ACTIONS, VIEW_SUBMISSIONS
from bot.slack_payloads import ButtonClick, SlackId, parse_payload
from connectors.errors import UnknownActionError
from policies.approvers import Refusal, group_ids
from runtime.approval_requests import request_view
from runtime.crashpoints import crash_point
from runtime.handlers.edits import edit_refusal
from runtime.intake import accept_edit
from runtime.messages import EditApproval
from runtime.transport import TransportError
from storage.ids import format_id, parse_key
from storage.records import Approval, ApprovalStatus, ProposedAction

log = structlog.get_logger(__name__)


# Why a person may not edit a request, said in a small dialog instead of the form.
CANNOT_EDIT = {
    Refusal.ALREADY_DECIDED: "{approval} has been decided already, so it can no longer be edited.",
    Refusal.EXPIRED: "{approval} has expired, so it can no longer be edited; ask for the action again if it "
    "is still needed.",
    Refusal.NOT_AN_APPROVER: "Only the {roles} role can decide {approval}, and so edit it; you don't have it.",
}


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Who(_Shape):
    id: SlackId


class _State(_Shape):
    values: dict[str, dict[str, Any]]


class _SubmittedView(_Shape):
    private_metadata: str = Field(default="", max_length=3000)
    state: _State
    blocks: list[Any] = Field(default_factory=list, max_length=100)  # as drawn: the inputs' initial values


class ViewSubmission(_Shape):
    """A `view_submission` payload of the Edit dialog: who saved it, and what the inputs held."""

    user: _Who
    view: _SubmittedView


class _Trigger(_Shape):
    trigger_id: str = Field(min_length=1, max_length=200)


def register_edit(app: AsyncApp, aios: Aios) -> None:
    @app.action(EDIT_ACTION_ID)
    async def on_edit(ack: AsyncAck, body: dict[str, Any]) -> None:
        BLOCK_ACTIONS.inc()
        await ack()
        click, trigger = parse_payload(ButtonClick, body, body), parse_payload(_Trigger, body, body)
        if click is None or trigger is None:
            return
        approval_id = parse_key(click.value, "AP")
        if approval_id is None:
            log.warning("click_with_unknown_value", value=click.value[:80], expected="AP")
            return
        aios.background.spawn(
            _open_dialog(aios, trigger.trigger_id, approval_id, click.user.id), name="edit_dialog"
        )

    @app.view(EDIT_CALLBACK_ID)
    async def on_save(ack: AsyncAck, body: dict[str, Any]) -> None:
        VIEW_SUBMISSIONS.inc()
        submission = parse_payload(ViewSubmission, body, body)
        if submission is None:
            await ack()
            return
        values = submission.view.state.values
        approval_id = parse_key(submission.view.private_metadata, "AP")
        if approval_id is None:
            log.warning("edit_with_foreign_metadata", metadata=submission.view.private_metadata[:80])
            await _ack_errors(ack, values, "This dialog is not one of AIOS's edits; close it.")
            return
        approval_ref = format_id("AP", approval_id)
        async with aios.units() as uow:
            approval = await uow.get(Approval, approval_id)
            proposed = await uow.get(ProposedAction, approval.action_id) if approval else None
        if approval is None or proposed is None:
            log.warning("edit_of_unknown_approval", approval=approval_id)
            await _ack_errors(ack, values, f"There is no approval {approval_ref}; close this dialog.")
            return
        if approval.status != ApprovalStatus.PENDING:
            await _ack_errors(ack, values, f"{approval_ref} has been decided already; close this dialog.")
            return
        try:
            action = aios.registry.model_for(proposed.name)
        except UnknownActionError:
            await _ack_errors(ack, values, f"{proposed.name} cannot be checked just now; try again later.")
            return
        if not {spec.name for spec in field_specs(action)} & set(values):
            # Every Edit dialog has inputs (one with none offers no Save): this did not come from one.
            log.warning("edit_without_inputs", approval=approval_id, blocks=sorted(values)[:5])
            await ack()
            return
        read = read_submission(action, values, proposed.params, submission.view.blocks)
        errors = {**validation_errors(aios.registry, proposed.name, read.params, list(values)), **read.errors}
        if errors:
            if not set(errors) <= set(values):
                # An error with no input to show it under: the dialog was not built for this action.
                log.warning("edit_errors_without_inputs", approval=approval_id, blocks=sorted(errors)[:5])
                await ack()
                return
            await ack(response_action="errors", errors=errors)
            return
        user = submission.user.id
        # Only what the person changed: the handler puts it over the parameters as they are when it runs.
        edit_id = await accept_edit(
            aios.units, approval_id, user, read.changes, approval.channel, owner=aios.lease.id
        )
        await ack()
        crash_point("edit_stored")  # past it, recovery handles the stored edit (not one of the generic steps)
        aios.submit(EditApproval(approval_id, user, read.changes, approval.channel, edit_id=edit_id))


async def _open_dialog(aios: Aios, trigger_id: str, approval_id: int, user: str) -> None:
    """The Edit dialog of the approval for ``user``, or a small one saying why they cannot edit it."""
    try:
        view = await _dialog(aios, approval_id, user)
        await aios.handlers.transport.open_view(trigger_id, view)
    except TransportError as exc:
        log.error("edit_dialog_not_opened", approval=approval_id, error=str(exc))


async def _dialog(aios: Aios, approval_id: int, user: str) -> dict[str, Any]:
    approval_ref = format_id("AP", approval_id)
    async with aios.units() as uow:
        approval = await uow.get(Approval, approval_id)
        proposed = await uow.get(ProposedAction, approval.action_id) if approval else None
    if approval is None or proposed is None:
        return notice_view(approval_ref, f"There is no approval {approval_ref}.")
    request = request_view(approval)
    now = aios.clock()
    roles = aios.policy.roles
    groups = {
        group: await aios.handlers.transport.group_members(group)
        for group in group_ids(roles, request.deciding_roles(now))
    }
    refusal = edit_refusal(request, user, roles, groups, now)
    if refusal is not None:
        deciding = " or ".join(request.deciding_roles(now))
        text = CANNOT_EDIT.get(refusal, CANNOT_EDIT[Refusal.NOT_AN_APPROVER])
        return notice_view(approval_ref, text.format(approval=approval_ref, roles=deciding))
    try:
        action = aios.registry.model_for(proposed.name)
    except UnknownActionError:
        return notice_view(
            approval_ref,
            f"No connector offers {proposed.name} just now, so {approval_ref} cannot be edited; "
            "approve or reject it as it is.",
        )
    return edit_view(approval_ref, action, proposed.params)


async def _ack_errors(ack: AsyncAck, values: dict[str, Any], message: str) -> None:
    """The message under the dialog's first input, so the person sees it; a plain ack when it has none."""
    first = next(iter(values), None)
    if first is None:
        await ack()
    else:
        await ack(response_action="errors", errors={first: message})
