"""`/aios undo A-3` and the Undo button: an executed action's inverse, proposed as a new run in the original's
thread for the person asking, and judged by the policy like any other proposal (the `ProposeAction` path).

Asking is quick and only touches the store, so a front door can do it before its ack: the checks (the action
ran, it has an inverse, no undo of it is on its way or done) and the claim. The claim is a unique (action,
attempt) stored with the request's intent in one transaction, so two clicks at once file one undo; a new attempt
is only possible once the one before ended without undoing (rejected, denied, expired, failed). Filing then
goes to the bus, after the ack; a claim that a stopped process never filed is filed by recovery
(``runtime.undo_filing.refile``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.bootstrap import Aios
from runtime.mrkdwn import escape, quote
from runtime.observability import INTENTS
from runtime.undo_filing import SOURCE, UndoFiling, inverse_of, proposal, succeeded_result
from storage.ids import format_id, parse_key
from storage.records import (
    ActionStatus,
    Intent,
    IntentStatus,
    ProposedAction,
    Run,
    RunStatus,
    UndoRequest,
)
from storage.repositories.undo import UndoQueries
from storage.unit_of_work import UnitOfWork

USAGE = "Which action? `/aios undo A-3`, with the action id of a “Done” message."
REFUSAL_QUOTE_MAX = 500  # a connector's reason, quoted
# An undo that ended in one of these left the action as it was: it may be asked for again.
ENDED_WITHOUT_UNDOING = (
    ActionStatus.REJECTED,
    ActionStatus.DENIED,
    ActionStatus.EXPIRED,
    ActionStatus.FAILED,
)
NOT_RUN: dict[str, str] = {
    ActionStatus.AWAITING_APPROVAL: "it is awaiting approval",
    ActionStatus.APPROVED: "it is approved and about to run",
    ActionStatus.DENIED: "the policy denied it",
    ActionStatus.REJECTED: "it was rejected",
    ActionStatus.EXPIRED: "its approval expired",
    ActionStatus.FAILED: "it failed; if it may still have taken effect, check the system it would have changed",
}
REFUND = (
    "a refund cannot be taken back; to charge the customer again, do it in the shop's or Stripe's dashboard"
)
NO_REVERSING_ACTION = "AIOS has no action that reverses {name}; undo it in the system it changed"
# What a person would do instead, for actions nothing can run backwards.
NO_INVERSE = {
    "shop.refund": REFUND,
    "stripe.refund": REFUND,
    "shopify.refund": REFUND.replace("the shop's or Stripe's dashboard", "Shopify's admin"),
    "email.send": "an email cannot be unsent; send a correction: `/aios email {to}: …`",
    "cms.unpublish": "to publish the post again: `/aios publish post {slug}`",
    "cms.create_draft": "a draft is not visible to readers; delete it in the CMS if it is not wanted",
    "shopify.tag_order": "remove the tags on order {order_id} in Shopify's admin",
    "shopify.note": "the earlier note on order {order_id} was replaced; write it back in Shopify's admin",
    "webhook.post": "a webhook call cannot be taken back; ask the owners of `{webhook}` to reverse it there",
    "wordpress.update": "the post's earlier text was not recorded; restore a revision in WordPress",
}


@dataclass(frozen=True)
class UndoAnswer:
    text: str  # mrkdwn for the person asking, and only for them
    filing: UndoFiling | None = None  # claimed: hand it to `file_undo` once the asker has the answer


async def ask_undo(aios: Aios, argument: str, user: str) -> UndoAnswer:
    """Check that the action can be undone and claim its undo; never raises for bad input."""
    words = argument.split()
    if len(words) != 1:
        return UndoAnswer(USAGE)
    key = parse_key(words[0], "A")
    if key is None:
        return UndoAnswer(f"{quote(words[0], 40)} is not an action id; action ids look like A-3. {USAGE}")
    return await undo_action(aios, key, user)


async def undo_action(aios: Aios, action_id: int, user: str) -> UndoAnswer:
    """What `/aios undo A-…` and the Undo button do for ``user``: the answer, and the filing when claimed."""
    ref = format_id("A", action_id)
    async with aios.units() as uow:
        original = await uow.get(ProposedAction, action_id)
        if original is None:
            return UndoAnswer(f"There is no action {ref}.")
        result = await succeeded_result(uow, action_id)
        if original.status == ActionStatus.COMPENSATED:
            return UndoAnswer(
                f"{ref} was already undone when a later step of its run failed (`/aios why {ref}`)."
            )
        # Escalated: it ran, a later step of its run failed, and it had no inverse (a person was asked).
        if original.status not in (ActionStatus.EXECUTED, ActionStatus.ESCALATED) or result is None:
            state = NOT_RUN.get(original.status, f"it is {original.status.replace('_', ' ')}")
            return UndoAnswer(f"{ref} has not run ({state}), so there is nothing to undo.")
        inverse, summary = inverse_of(aios.registry, original, result)
        if inverse is None:
            return UndoAnswer(f"{ref} ({escape(summary)}) cannot be undone: {_follow_up(original)}.")
        queries = uow.undos
        latest = await queries.latest_request(action_id)
        attempt = 0
        if latest is not None:
            busy = await _earlier_request(uow, queries, latest, ref)
            if busy is not None:
                return UndoAnswer(busy)
            attempt = latest.attempt + 1
        run = await uow.get(Run, original.run_id)
        intent = await uow.get(Intent, run.intent_id) if run else None
        assert run is not None and intent is not None
        request = Intent(
            source=SOURCE,
            team_id=intent.team_id,
            channel=intent.channel,
            thread_ts=intent.thread_ts,
            user=user,
            text=f"undo {ref}",  # what `/aios why` shows as the request
            owner=aios.lease.id,
        )
        if not await queries.claim(action_id, attempt, request):
            return UndoAnswer(
                f"An undo of {ref} was asked for a moment ago; it is being filed in its thread."
            )
        await uow.commit()
    INTENTS.labels(source=SOURCE).inc()
    assert request.id is not None
    filing = UndoFiling(request.id, run.agent, action_id, inverse, user)
    return UndoAnswer(
        f"Asking to undo {ref} with {escape(inverse.summary())}, in the thread of {ref}; the policy decides "
        "whether someone must approve it.",
        filing,
    )


async def file_undo(aios: Aios, filing: UndoFiling) -> str | None:
    """Propose the claimed undo through the policy; a sentence for the asker when it was not proposed."""
    ref = format_id("A", filing.original)
    refused = await aios.registry.refusal(filing.inverse)
    if refused is not None:
        async with aios.units() as uow:  # ended: a later request may try again
            await uow.runs.fail_intent(filing.intent_id)
            await uow.commit()
        return f"The undo of {ref} was not filed: {quote(refused, REFUSAL_QUOTE_MAX)}."
    await aios.process(proposal(filing))
    return None


def _follow_up(original: ProposedAction) -> str:
    template = NO_INVERSE.get(original.name)
    if template is None:
        return NO_REVERSING_ACTION.format(name=original.name)
    try:
        return template.format(**{k: escape(str(v)) for k, v in original.params.items()})
    except (KeyError, IndexError):  # the template names a parameter this action did not record
        return NO_REVERSING_ACTION.format(name=original.name)


# A run in these states may still store the undo it was filed for.
_FILING = (RunStatus.PLANNING, RunStatus.PAUSED, RunStatus.OVER_BUDGET)


async def _earlier_request(
    uow: UnitOfWork, queries: UndoQueries, latest: UndoRequest, ref: str
) -> str | None:
    """Why the action cannot be asked to be undone again now, or None when the last request ended in nothing."""
    filed = await queries.undo_filed_for(latest.intent_id)
    if filed is None:
        # Not filed yet: still on its way (received, or its run is being planned right now), or ended without
        # becoming an undo (refused before filing, or its run ended first): only then may it be asked again.
        intent = await uow.get(Intent, latest.intent_id)
        runs = await uow.runs.runs_for_intent(latest.intent_id)
        on_its_way = intent is not None and (
            intent.status == IntentStatus.RECEIVED
            or (
                intent.status == IntentStatus.DISPATCHED
                and (not runs or any(r.status in _FILING for r in runs))
            )
        )
        if on_its_way:
            return f"An undo of {ref} was asked for a moment ago; it is being filed in its thread."
        return None
    undo_ref = format_id("A", filed.id)
    if filed.status == ActionStatus.EXECUTED:
        return f"{ref} was already undone by {undo_ref} (`/aios why {undo_ref}`)."
    if filed.status in ENDED_WITHOUT_UNDOING:
        return None
    return (
        f"An undo of {ref} is already on its way: {undo_ref} is {filed.status.replace('_', ' ')} "
        f"(`/aios why {undo_ref}`)."
    )
