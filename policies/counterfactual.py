"""What would have changed a policy verdict, in plain words.

The action is judged again under the policy version that decided, with the facts recorded then and one thing
changed: the amount, a fact (what the order or payment already had refunded, what the requester moved earlier
today, the run's earlier actions), a role the requester lacks, an MCP tool's annotation. A sentence is said
only when such a judgement gave another verdict, so every claim is one the policy makes. Thresholds are found
by bisection on whole cents. Pure: the caller reads the records.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from policies.approvers import Refusal
from policies.engine import DEFAULT_RULE_ID, Policy, PolicyVerdict
from policies.replay import BUDGET_GRANT, RecordedDecision, money_param, would_have
from policies.replay import replay as judge_again

MAX_SENTENCES = 3
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_PLAIN_REF = re.compile(r"^[A-Za-z0-9_.:#-]{1,40}$")  # an order or payment id worth naming in a sentence
_TIERS = 3  # verdicts below the recorded amount worth naming (deny above, approval between, allow below)


@dataclass(frozen=True)
class _Outcome:
    verdict: str
    rule_id: str
    approvers: tuple[str, ...]

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """What a person sees change: the verdict and who approves, not which rule said it."""
        return self.verdict, tuple(sorted(self.approvers))


def counterfactual(policy: Policy, recorded: RecordedDecision) -> list[str]:
    """Up to three sentences saying what would have changed the verdict, or stating the rule when nothing
    tried would have. Empty for a budget grant, or when the recorded facts no longer reproduce the verdict
    under ``policy`` (then nothing said about it could be trusted)."""
    if recorded.name == BUDGET_GRANT:
        return []
    judge = _Judge(policy, recorded)
    try:
        base = judge(recorded)
    except _Unjudgeable:
        return [
            f"The condition of rule {recorded.rule_id} could not be evaluated for this action, so the policy "
            "blocked it (it fails closed)."
        ]
    if (base.verdict, base.rule_id) != (recorded.verdict, recorded.rule_id):
        return []
    sentences: list[str] = []
    every_change_judged = True
    for tried in (_cheaper, _smaller_facts, _annotations, _roles, _dearer):
        try:
            sentences += tried(judge, base)
        except _Unjudgeable:  # a change the conditions cannot judge says nothing about what the policy means
            every_change_judged = False
    if sentences:
        return sentences[:MAX_SENTENCES]
    return [_as_the_rule_says(policy, base, recorded, every_change_judged)]


def refused_click(
    refusal: str,
    user: str,
    *,
    approve: bool | None,
    deciding_roles: Sequence[str],
    rule_id: str | None,
    quorum: int = 1,
    expires_at: datetime | None = None,
) -> str:
    """A refused click in plain words, with the role it needed: "U0BOB could not approve: not a manager
    (approvers: manager)". ``refusal`` is the recorded kind (``not_an_approver``, ``self_approval``, …);
    ``approve`` None when the click itself is not on record."""
    verb = {True: "approve", False: "reject", None: "decide"}[approve]
    roles = ", ".join(deciding_roles) or "none named"
    rule = f"rule {rule_id}" if rule_id else "the rule"
    match refusal:
        case Refusal.NOT_AN_APPROVER:
            return f"{user} could not {verb}: not {_a(' or '.join(deciding_roles) or 'approver')} (approvers: {roles})."
        case Refusal.SELF_APPROVAL:
            why = (
                f"{rule} forbids self-approval"
                if quorum <= 1
                else f"the requester never counts towards {rule}'s quorum of {quorum}"
            )
            other = " or ".join(deciding_roles)
            return f"{user} could not approve their own request: {why}; another {other} has to (approvers: {roles})."
        case Refusal.EXPIRED:
            deadline = f" at {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
            return f"{user} could not {verb}: the request had expired{deadline}; the action has to be asked again."
        case Refusal.ALREADY_DECIDED:
            return f"{user}'s click came after the request was decided, so it changed nothing."
        case Refusal.ALREADY_VOTED:
            return (
                f"{user} had already approved; {rule} needs {quorum} different approvers ({roles}), "
                "so a second click counts once."
            )
    return f"{user}'s click was refused ({refusal})."


class _Unjudgeable(Exception):
    """A condition failed to evaluate, so the engine denied without a rule saying so."""


class _Judge:
    """The recorded decision judged with changes, each outcome remembered (bisection asks some twice)."""

    def __init__(self, policy: Policy, recorded: RecordedDecision) -> None:
        self.policy = policy
        self.recorded = recorded
        self._seen: dict[str, _Outcome] = {}

    def __call__(self, changed: RecordedDecision, policy: Policy | None = None) -> _Outcome:
        memo = (
            repr((changed.params, changed.facts, changed.requester, changed.run_totals))
            if policy is None
            else ""
        )
        if memo and memo in self._seen:
            return self._seen[memo]
        verdict: PolicyVerdict = judge_again(policy or self.policy, changed).new
        if verdict.failed_condition:
            raise _Unjudgeable(verdict.explanation)
        outcome = _Outcome(verdict.verdict, verdict.rule_id, verdict.approver_roles)
        if memo:
            self._seen[memo] = outcome
        return outcome

    def rule_numbers(self) -> list[float]:
        """The numbers the rules compare with: where thresholds are likely, checked besides bisection."""
        return [float(n) for rule in self.policy.document.rules for n in _NUMBER.findall(rule.when)]


# --- The amount ---


def _with_amount(recorded: RecordedDecision, param: str, cents: int) -> RecordedDecision:
    """The action for another amount; the run's total for the action moves with it (it counts this one)."""
    old = float(recorded.params[param])
    new = cents / 100
    params = {**recorded.params, param: new}
    facts = recorded.facts
    if facts is not None and isinstance(facts.get("run_totals"), Mapping):
        totals = dict(facts["run_totals"])
        if recorded.name in totals:
            totals[recorded.name] = round(float(totals[recorded.name]) - old + new, 2)
        facts = {**facts, "run_totals": totals}
    run_totals = dict(recorded.run_totals)
    if recorded.name in run_totals:
        run_totals[recorded.name] = round(run_totals[recorded.name] - old + new, 2)
    return replace(recorded, params=params, facts=facts, run_totals=run_totals)


def _cheaper(judge: _Judge, base: _Outcome) -> list[str]:
    """What the action would have met at a smaller amount: each verdict below this one, with its top amount."""
    recorded = judge.recorded
    param = money_param(recorded.params)
    if param is None:
        return []

    def at(cents: int) -> _Outcome:
        return judge(_with_amount(recorded, param, cents))

    tiers: list[tuple[_Outcome, int]] = []  # each verdict below, with the largest amount that meets it
    top, current = round(float(recorded.params[param]) * 100), base
    for _ in range(_TIERS):
        if top <= 1 or at(1).key == current.key:
            break
        edge = _last_different(at, 1, top, current)
        current, top = at(edge), edge
        tiers.append((current, edge))
    sentences = []
    for number, (found, edge) in enumerate(tiers):
        if number + 1 < len(tiers):  # a band: the next verdict down starts a cent below it
            span = f"from {_usd(tiers[number + 1][1] + 1)} to {_usd(edge)}"
        else:
            span = "at " + _down_to_a_cent(found, edge, judge, at)
        sentences.append(f"It {_would(found)} {span} ({_rule(found)}).")
    return sentences


def _dearer(judge: _Judge, base: _Outcome) -> list[str]:
    """The amount above which the action would have met a stricter verdict (the first one only)."""
    recorded = judge.recorded
    param = money_param(recorded.params)
    if param is None or base.verdict == "deny":
        return []

    def at(cents: int) -> _Outcome:
        return judge(_with_amount(recorded, param, cents))

    low = round(float(recorded.params[param]) * 100)
    ceiling = low + 2 * round(max([0.0, *judge.rule_numbers()]) * 100) + 1
    if at(ceiling).key == base.key:
        return []
    first = _first_different(at, low, ceiling, base)
    found = at(first)
    return [f"It {_would(found)} over {_usd(first - 1)} ({_rule(found)})."]


def _last_different(at: Callable[[int], _Outcome], low: int, high: int, same: _Outcome) -> int:
    """The largest cents in [low, high) judged otherwise than ``same``, given ``at(low)`` differs and
    ``at(high)`` does not: a bisection, so a threshold is found in about twenty judgements."""
    while high - low > 1:
        middle = (low + high) // 2
        if at(middle).key == same.key:
            high = middle
        else:
            low = middle
    return low


def _first_different(at: Callable[[int], _Outcome], low: int, high: int, same: _Outcome) -> int:
    """The smallest cents in (low, high] judged otherwise than ``same``, given ``at(low)`` does not differ and
    ``at(high)`` does."""
    while high - low > 1:
        middle = (low + high) // 2
        if at(middle).key == same.key:
            low = middle
        else:
            high = middle
    return high


def _down_to_a_cent(found: _Outcome, edge: int, judge: _Judge, at: Callable[[int], _Outcome]) -> str:
    # "or less" only when the amounts below were seen to give the same: the rules' own numbers are checked
    # besides a cent, since a bisection alone could step over a band in between.
    below = [1, *(round(n * 100) + d for n in judge.rule_numbers() for d in (-1, 0, 1))]
    uniform = all(at(cents).key == found.key for cents in below if 1 <= cents < edge)
    return f"{_usd(edge)} or less" if uniform else _usd(edge)


# --- Facts recorded with the decision ---


@dataclass(frozen=True)
class _Fact:
    """One number the policy saw besides the action, and how to say it."""

    field: str  # in the recorded facts: order_refunded, payment_refunded, requester_today, run_totals
    kind: str | None  # the action name, for the per-action totals
    value: float  # as recorded, less this action's own amount (run totals count it)
    own: float  # this action's amount where the recorded value counts it
    said: str  # "if … {} or less": the clause, with the threshold to fill in

    def changed(self, recorded: RecordedDecision, value: float) -> RecordedDecision:
        facts = dict(recorded.facts or {})
        total = round(value + self.own, 2)
        if self.kind is None:
            facts[self.field] = total
        else:
            facts[self.field] = {**dict(facts.get(self.field) or {}), self.kind: total}
        return replace(recorded, facts=facts)


def _facts(recorded: RecordedDecision) -> list[_Fact]:
    facts = recorded.facts
    if facts is None:
        return []
    name, params = recorded.name, recorded.params
    order, payment = _ref(params.get("order_id")), _ref(params.get("payment"))
    found = [
        _Fact(
            "order_refunded",
            None,
            _number(facts.get("order_refunded")),
            0.0,
            "if {} or less had already been refunded on " + (f"order {order}" if order else "this order"),
        ),
        _Fact(
            "payment_refunded",
            None,
            _number(facts.get("payment_refunded")),
            0.0,
            "if {} or less had already been refunded on "
            + (f"payment {payment}" if payment else "this payment"),
        ),
    ]
    today = facts.get("requester_today")
    for kind, moved in today.items() if isinstance(today, Mapping) else ():
        said = f"if the requester's earlier {kind} actions today had come to {{}} or less"
        found.append(_Fact("requester_today", str(kind), _number(moved), 0.0, said))
    param = money_param(params)
    own = float(params[param]) if param is not None else 0.0
    totals = facts.get("run_totals")
    for kind, total in totals.items() if isinstance(totals, Mapping) else ():
        mine = own if kind == name else 0.0  # the run's total for this action counts this one
        said = f"if the earlier {kind} actions in this run had come to {{}} or less"
        found.append(_Fact("run_totals", str(kind), round(_number(total) - mine, 2), mine, said))
    return [fact for fact in found if fact.value >= 0.01]


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _smaller_facts(judge: _Judge, base: _Outcome) -> list[str]:
    """For each fact that weighed: the largest value at which the verdict would have been otherwise."""
    return [said for fact in _facts(judge.recorded) if (said := _smaller_fact(judge, base, fact))]


def _smaller_fact(judge: _Judge, base: _Outcome, fact: _Fact) -> str | None:
    def at(cents: int) -> _Outcome:
        return judge(fact.changed(judge.recorded, cents / 100))

    if at(0).key == base.key:
        return None
    top = round(fact.value * 100)
    edge = _last_different(at, 0, top, base)
    found = at(edge)
    actual = f"they came to {_usd(top)}" if fact.kind is not None else f"{_usd(top)} had been"
    return f"It {_would(found)} {fact.said.format(_usd(edge))} ({_rule(found)}); {actual}."


# --- Who asked, and what the tool's server says of it ---


def _annotations(judge: _Judge, base: _Outcome) -> list[str]:
    recorded = judge.recorded
    if recorded.facts is None or not recorded.name.startswith("mcp."):
        return []
    marks = dict(recorded.facts.get("action_facts") or {})
    sentences = []
    for mark in ("read_only", "destructive"):
        flipped = not bool(marks.get(mark, False))
        found = judge(replace(recorded, facts={**recorded.facts, "action_facts": {**marks, mark: flipped}}))
        if found.key != base.key:
            word = mark.replace("_", "-")
            how = f"marked the tool {word}" if flipped else f"not marked the tool {word}"
            sentences.append(f"It {_would(found)} had its server {how} ({_rule(found)}).")
    return sentences


def _roles(judge: _Judge, base: _Outcome) -> list[str]:
    """Each role the requester lacks that would have changed the verdict, if any rule looks at roles."""
    policy, recorded = judge.policy, judge.recorded
    if not any("requester.roles" in rule.when for rule in policy.document.rules):
        return []
    held = set(policy.roles_of(recorded.requester, _groups_of(recorded)))
    sentences = []
    for role, members in policy.roles.items():
        if role in held:
            continue
        document = policy.document.model_copy(
            update={"roles": {**policy.roles, role: [*members, recorded.requester]}}
        )
        found = judge(recorded, Policy(document, policy.hash, policy.source))
        if found.key != base.key:
            sentences.append(f"It {_would(found)} had the requester been {_a(role)} ({_rule(found)}).")
    return sentences


def _groups_of(recorded: RecordedDecision) -> dict[str, set[str]]:
    groups = (recorded.facts or {}).get("groups") or ()
    return {str(group): {recorded.requester} for group in groups}


# --- Words ---


def _as_the_rule_says(policy: Policy, base: _Outcome, recorded: RecordedDecision, judged: bool) -> str:
    """Nothing tried changed the verdict: say what the rule decides and for whom, and what was tried (when
    every change could be judged)."""
    tried = _tried(policy, recorded) if judged else []
    unchanged = f"; {' or '.join(tried)} would not have changed that" if tried else ""
    if base.verdict == "allow":
        return f"Allowed without approval by {_rule(base)}{unchanged}."
    if base.verdict == "deny":
        return f"Denied by {_rule(base)}{unchanged}."
    rule = next((r for r in policy.document.rules if r.id == base.rule_id), None)
    others = ", not by the requester" if rule is not None and rule.forbid_self_approval else ""
    who = " or ".join(base.approvers)
    return f"Under {_rule(base)} every {recorded.name} like this needs approval by {who}{others}{unchanged}."


def _tried(policy: Policy, recorded: RecordedDecision) -> list[str]:
    """What was varied for this action, in words, so that "nothing changed it" says exactly that much."""
    tried = ["another amount"] if money_param(recorded.params) is not None else []
    if _facts(recorded):
        tried.append("smaller earlier totals")
    if recorded.facts is not None and recorded.name.startswith("mcp."):
        tried.append("other annotations of the tool")
    if any("requester.roles" in rule.when for rule in policy.document.rules):
        tried.append("another role of the requester")
    return tried


def _would(outcome: _Outcome) -> str:
    return would_have(outcome.verdict, outcome.approvers)


def _rule(outcome: _Outcome) -> str:
    return "the policy's default" if outcome.rule_id == DEFAULT_RULE_ID else f"rule {outcome.rule_id}"


def _usd(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _ref(value: object) -> str | None:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return text if _PLAIN_REF.match(text) else None
