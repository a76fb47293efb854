"""`/aios why <id>`: the whole chain behind a record, from the intent to the execution.

What people and models wrote (the intent, rationales, parameters, memories, connector answers) is quoted
escaped and shortened: the records keep it whole, the answer only has to recognise it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.explain_edits import edit_line, first_proposed, params_when_judged
from bot.explain_escalation import escalation_lines
from bot.explain_rejection import reason_lines
from runtime.mrkdwn import escape, quote, truncate
from storage.ids import MAX_KEY, format_id, parse_id
from storage.records import (
    ActionStatus,
    Approval,
    Decision,
    Execution,
    Intent,
    Memory,
    PolicyVersion,
    ProposedAction,
    Run,
)
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory
from storage.why_queries import ModelUse, WhyQueries

if TYPE_CHECKING:
    from policies.engine import Policy

INTENT_QUOTE_MAX = 500
RATIONALE_QUOTE_MAX = 1000
MEMORY_QUOTE_MAX = 300
MEMORY_KEY_QUOTE_MAX = 80
DETAIL_QUOTE_MAX = 500  # parameters, reasons, execution results and errors
RULE_QUOTE_MAX = 1000  # a rule as its policy file had it


class NotFoundError(LookupError):
    """No record has this id."""


async def explain(units: UnitOfWorkFactory, record_id: str) -> str:
    """Plain Slack mrkdwn explaining the run the record belongs to, focused on the named action if any."""
    prefix, key = parse_id(record_id)
    if key > MAX_KEY:  # no table holds it, and asking would overflow the driver
        raise NotFoundError(f"there is no record {prefix}-{key}")
    async with units() as uow:
        run, focus = await _locate(uow, prefix, key)
        if run is None:
            raise NotFoundError(f"there is no record {prefix}-{key}")
        assert run.id is not None
        intent = await uow.get(Intent, run.intent_id)
        assert intent is not None
        lines = [
            f"*Why — {format_id('R', run.id)}* (run {run.status})",
            f"• *Intent* `{format_id('I', intent.id)}`: <@{intent.user}> asked "
            f"“{quote(intent.text, INTENT_QUOTE_MAX)}” ({intent.source}, {intent.created_at:%Y-%m-%d %H:%M UTC})",
            f"• *Agent* {run.agent}: {quote(run.rationale, RATIONALE_QUOTE_MAX)}",
            _cost_line(await WhyQueries(uow.session).model_use(run.id)),
        ]
        if run.memories_used:
            lines.append("• *Memories used*")
            for memory_id in run.memories_used:
                lines.append(f"  – `M-{memory_id}` {_memory_line(await uow.get(Memory, memory_id))}")
        lines += await escalation_lines(uow, run.id)
        newest = await uow.replay.latest_policy_hash()
        for action in await uow.runs.actions_for_run(run.id):
            if focus is not None and action.id != focus:
                continue
            lines += await _explain_action(uow, action, newest)
    return "\n".join(lines)


async def _locate(uow: UnitOfWork, prefix: str, key: int) -> tuple[Run | None, int | None]:
    if prefix == "R":
        return await uow.get(Run, key), None
    if prefix == "I":
        runs = await uow.runs.runs_for_intent(key)
        return (runs[0] if runs else None), None
    action_id: int | None = None
    if prefix == "A":
        action_id = key
    elif prefix == "D":
        decision = await uow.get(Decision, key)
        action_id = decision.action_id if decision else None
    elif prefix == "AP":
        approval = await uow.get(Approval, key)
        action_id = approval.action_id if approval else None
    elif prefix == "E":
        execution = await uow.get(Execution, key)
        action_id = execution.action_id if execution else None
    action = await uow.get(ProposedAction, action_id) if action_id is not None else None
    if action is None:
        return None, None
    return await uow.get(Run, action.run_id), action.id


async def _explain_action(uow: UnitOfWork, action: ProposedAction, newest: str | None) -> list[str]:
    assert action.id is not None
    lines = [
        f"• *Proposed action* `{format_id('A', action.id)}` {action.name} "
        f"`{quote(json.dumps(action.params, sort_keys=True), DETAIL_QUOTE_MAX)}` — now {action.status}"
    ]
    lines += await first_proposed(uow, action)
    lines += await _undo_links(uow, action)
    for decision in await uow.runs.decisions_for_action(action.id):
        when = f"{decision.created_at:%Y-%m-%d %H:%M:%S UTC}"
        ref = f"`{format_id('D', decision.id)}`"
        if edited := edit_line(decision):
            lines.append(edited)
        elif decision.kind == "policy":
            lines.append(
                f"  – {ref} policy verdict *{decision.verdict}* by rule `{decision.rule_id}` "
                f"(policy {(decision.policy_hash or '')[:12]}) at {when}: {quote(decision.reason, DETAIL_QUOTE_MAX)}"
            )
            if decision.policy_hash and newest and decision.policy_hash != newest:
                lines += await _rule_as_written(uow, decision.policy_hash, newest, decision.rule_id)
            lines += await _what_would_have_changed_it(uow, action, decision)
        elif decision.kind == "human":
            lines.append(f"  – {ref} *{decision.verdict}* by <@{decision.actor}> at {when}")
        elif decision.kind == "feedback":
            lines += await reason_lines(uow, decision)
        elif decision.kind == "refusal":
            lines.append(f"  – {ref} click refused at {when}: {await _refused_click(uow, action, decision)}")
        else:
            lines.append(
                f"  – {ref} {decision.verdict} at {when}: {quote(decision.reason, DETAIL_QUOTE_MAX)}"
            )
    for execution in await uow.executions.executions_for_action(action.id):
        outcome = json.dumps(execution.result, sort_keys=True) if execution.result else execution.error
        lines.append(
            f"  – execution `{format_id('E', execution.id)}` *{execution.status}*: "
            f"{quote(outcome or '', DETAIL_QUOTE_MAX)} "
            f"(idempotency key {execution.idempotency_key[:12]}…)"
        )
    return lines


async def _undo_links(uow: UnitOfWork, action: ProposedAction) -> list[str]:
    """`/aios undo` both ways: the action this one takes back, and the undos asked for of this one."""
    assert action.id is not None
    lines = []
    if action.undoes_action_id is not None:
        lines.append(f"  – undoes `{format_id('A', action.undoes_action_id)}` (asked for with `/aios undo`)")
    for undo in await uow.undos.undos_of(action.id):
        ref = f"`{format_id('A', undo.id)}`"
        if undo.status == ActionStatus.EXECUTED:
            lines.append(f"  – undone by {ref}")
        else:
            lines.append(f"  – undo {ref} asked for, now {undo.status}")
    return lines


async def _rule_as_written(uow: UnitOfWork, decided_by: str, newest: str, rule_id: str | None) -> list[str]:
    """The rule as the policy that decided had it, when the policy that judged last has it otherwise (or not)."""
    import yaml  # here: most answers never need it, and `aios why` must start quickly

    if rule_id is None:
        return []
    then = await uow.get(PolicyVersion, decided_by)
    now = await uow.get(PolicyVersion, newest)
    written = _rule_in(then.text, rule_id) if then else None
    if written is None or (now is not None and _rule_in(now.text, rule_id) == written):
        return []
    text = yaml.safe_dump(written, sort_keys=False, allow_unicode=True).strip()
    return [
        f"    rule `{rule_id}` as written in policy {decided_by[:12]} (the policy in force now, {newest[:12]}, "
        "has it otherwise or not at all):",
        f"```{quote(text, RULE_QUOTE_MAX)}```",
    ]


def _rule_in(policy_text: str, rule_id: str) -> object:
    """A rule (or the default, or a budget for a grant's ``budget:`` id) as the policy file has it, or None."""
    import yaml

    try:
        document = yaml.safe_load(policy_text)
    except yaml.YAMLError:
        return None
    if not isinstance(document, dict):
        return None
    if rule_id == "default":
        return {"default": document.get("default"), "default_approvers": document.get("default_approvers")}
    listed = document.get("budgets") if rule_id.startswith("budget:") else document.get("rules")
    wanted = rule_id.removeprefix("budget:")
    entries = listed if isinstance(listed, list) else []
    return next((entry for entry in entries if isinstance(entry, dict) and entry.get("id") == wanted), None)


# --- What it cost, and what would have changed a verdict ---

COUNTERFACTUAL_QUOTE_MAX = 1200  # up to three sentences
WHEN_QUOTE_MAX = 300  # a rule's condition as the deciding policy had it


def _memory_line(memory: Memory | None) -> str:
    """A memory a run was given, with its kind and key: what it is about (an order, a customer, a post), so that a
    customer's memory about another of their orders reads as about the customer."""
    if memory is None:
        return "(forgotten since)"
    key = f"key `{quote(memory.key, MEMORY_KEY_QUOTE_MAX)}`" if memory.key else "no key"
    return f"({memory.kind}, {key}) {quote(memory.text, MEMORY_QUOTE_MAX)}"


def _cost_line(uses: list[ModelUse]) -> str:
    """The run's model calls: how many for routing and for planning, the tokens, the dollars, the models."""
    if not uses:
        return "• *Cost* no model calls (offline planner)"
    calls = sum(u.calls for u in uses)
    by_role: dict[str, int] = {}
    for use in uses:
        by_role[use.role] = by_role.get(use.role, 0) + use.calls
    roles = ", ".join(f"{n} {role}" for role, n in by_role.items())
    failed = sum(u.failed for u in uses)
    failures = f", {failed} failed" if failed else ""
    tokens = (
        f"{sum(u.input_tokens for u in uses):,} input, {sum(u.output_tokens for u in uses):,} output, "
        f"{sum(u.cache_write_tokens for u in uses):,} cache write, "
        f"{sum(u.cache_read_tokens for u in uses):,} cache read tokens"
    )
    models = ", ".join(f"{quote(u.model, 80)} ({u.role})" for u in uses)
    return (
        f"• *Cost* {calls} model call{'s' if calls != 1 else ''} ({roles}{failures}): {tokens}; "
        f"${sum(u.cost_usd for u in uses):.4f}; {models}"
    )


async def _what_would_have_changed_it(
    uow: UnitOfWork, action: ProposedAction, decision: Decision
) -> list[str]:
    """The policy verdict's counterfactual, judged by the version that decided with the facts it saw, and
    that rule's condition as the version had it. Nothing for decisions recorded before facts were kept."""
    if decision.facts is None or decision.policy_hash is None or decision.id is None:
        return []
    version = await uow.get(PolicyVersion, decision.policy_hash)
    if version is None:
        return []
    # Here, not at the top: loading a policy compiles its CEL, which `aios why` of other records never needs.
    from policies.counterfactual import counterfactual
    from policies.replay import RecordedDecision

    policy = _deciding_policy(version.text)
    if policy is None:
        return []  # a version this code no longer reads: its verdict stands, untested here
    approval = await uow.approvals.approval_for_action(action.id or 0)
    recorded = RecordedDecision(
        decision_id=decision.id,
        action_id=action.id or 0,
        run_id=action.run_id,
        name=action.name,
        params=await params_when_judged(uow, action, decision),
        verdict=decision.verdict,
        rule_id=decision.rule_id,
        policy_hash=decision.policy_hash,
        approvers=tuple(approval.approver_roles) if approval else (),
        facts=decision.facts,
        requester=str(decision.facts.get("requester", "")),
    )
    sentences = counterfactual(policy, recorded)
    if not sentences:
        return []
    lines = [f"    *What would have changed it:* {quote(' '.join(sentences), COUNTERFACTUAL_QUOTE_MAX)}"]
    rule = next((r for r in policy.document.rules if r.id == decision.rule_id), None)
    if rule is not None:
        lines.append(
            f"    rule `{decision.rule_id}` when `{quote(' '.join(rule.when.split()), WHEN_QUOTE_MAX)}`"
        )
    return lines


@functools.lru_cache(maxsize=8)
def _deciding_policy(text: str) -> Policy | None:
    """A stored policy version, loaded once per process: a server explains many decisions of few versions."""
    from policies.engine import Policy
    from policies.errors import PolicyError

    try:
        return Policy.from_text(text, "a stored policy version")
    except PolicyError:
        return None


async def _refused_click(uow: UnitOfWork, action: ProposedAction, decision: Decision) -> str:
    """A refused click in plain words with the role it needed, or the recorded reason when the approval it was
    refused on is gone."""
    from policies.counterfactual import refused_click

    approval = await uow.approvals.approval_for_action(action.id or 0)
    refusal = decision.verdict.removeprefix("refused:")
    if approval is None or approval.id is None or refusal == decision.verdict:
        return quote(decision.reason, DETAIL_QUOTE_MAX)
    escalated = approval.escalated_at is not None and approval.escalated_at <= decision.created_at
    roles = tuple(dict.fromkeys([*approval.approver_roles, *(approval.escalate_to if escalated else ())]))
    clicked = await WhyQueries(uow.session).click_approved(approval.id, decision.actor, decision.created_at)
    said = refused_click(  # the policy file's names escaped, so that the mention stays one
        refusal,
        f"<@{escape(decision.actor)}>",
        approve=clicked,
        deciding_roles=[escape(role) for role in roles],
        rule_id=escape(decision.rule_id) if decision.rule_id else None,
        quorum=approval.quorum,
        expires_at=approval.expires_at,
    )
    return truncate(said, DETAIL_QUOTE_MAX)


# --- The records an explanation links to ---


@dataclass(frozen=True)
class RelatedRecords:
    """The run, approval and execution behind an explained record, as ids (``R-3``), each when there is one."""

    run: str | None = None
    approval: str | None = None
    execution: str | None = None


async def related_records(units: UnitOfWorkFactory, prefix: str, key: int) -> RelatedRecords:
    """The run of the record ``prefix``-``key``, and the approval and newest execution of its action (of the
    run's one action when it has only one); nothing for an id no record has."""
    if key > MAX_KEY:
        return RelatedRecords()
    async with units() as uow:
        run, focus = await _locate(uow, prefix, key)
        if run is None:
            return RelatedRecords()
        assert run.id is not None
        if focus is None:
            actions = await uow.runs.actions_for_run(run.id)
            focus = actions[0].id if len(actions) == 1 else None
        approval = await uow.approvals.approval_for_action(focus) if focus is not None else None
        executions = await uow.executions.executions_for_action(focus) if focus is not None else []
    return RelatedRecords(
        run=format_id("R", run.id),
        approval=format_id("AP", approval.id) if approval is not None else None,
        execution=format_id("E", executions[-1].id) if executions else None,
    )
