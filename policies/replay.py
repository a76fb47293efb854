"""What-if replay: a recorded action judged again under another policy, with the facts recorded when it was
first judged, and the change classified. Pure: the caller reads the records and prints the result.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.engine import History, Policy, PolicyVerdict

BUDGET_GRANT = "budget.grant"  # judged by the budget's approvers, not by the rules
MONEY_PARAMS = ("amount", "amount_usd")  # a refund's amount, a budget grant's dollars

_RANK = {"allow": 0, "require_approval": 1, "deny": 2}


@dataclass(frozen=True)
class Facts:
    """What the policy saw besides the action when it judged: stored with each policy decision."""

    requester: str
    roles: tuple[
        str, ...
    ] = ()  # as the policy in force resolved them (shown, not used: roles are re-resolved)
    groups: tuple[str, ...] = ()  # user groups (S…) the requester was found in
    run_totals: Mapping[str, float] = field(default_factory=dict)
    order_refunded: float = 0.0
    payment_refunded: float = 0.0
    requester_today: Mapping[str, float] = field(default_factory=dict)
    action_facts: Mapping[str, bool] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "requester": self.requester,
            "roles": list(self.roles),
            "groups": list(self.groups),
            "run_totals": dict(self.run_totals),
            "order_refunded": self.order_refunded,
            "payment_refunded": self.payment_refunded,
            "requester_today": dict(self.requester_today),
            "action_facts": dict(self.action_facts) if self.action_facts is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Facts:
        action_facts = data.get("action_facts")
        return cls(
            requester=str(data.get("requester", "")),
            roles=tuple(data.get("roles") or ()),
            groups=tuple(data.get("groups") or ()),
            run_totals={str(k): float(v) for k, v in (data.get("run_totals") or {}).items()},
            order_refunded=float(data.get("order_refunded") or 0.0),
            payment_refunded=float(data.get("payment_refunded") or 0.0),
            requester_today={str(k): float(v) for k, v in (data.get("requester_today") or {}).items()},
            action_facts={str(k): bool(v) for k, v in action_facts.items()} if action_facts else None,
        )


class Change(enum.StrEnum):
    SAME = "same"
    STRICTER = "stricter"  # allow → approval, allow or approval → deny
    LOOSER = "looser"
    DIFFERENT = "different"  # the same verdict, by another rule or for other approvers


@dataclass(frozen=True)
class RecordedDecision:
    """A policy decision as recorded, with its action. ``facts`` is None for decisions from before facts were
    kept: then ``requester`` (from the intent) and ``run_totals`` (from the run's earlier actions) stand in."""

    decision_id: int
    action_id: int
    run_id: int
    name: str
    params: Mapping[str, Any]
    verdict: str
    rule_id: str | None
    policy_hash: str | None
    approvers: tuple[str, ...]
    facts: Mapping[str, Any] | None
    requester: str
    run_totals: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Replayed:
    recorded: RecordedDecision
    new: PolicyVerdict
    change: Change
    partial: bool  # facts partly reconstructed: this decision was recorded before facts were kept

    @property
    def money(self) -> float:
        return money_of(self.recorded.params)


def money_param(params: Mapping[str, Any]) -> str | None:
    """The parameter holding the action's money (a refund's amount, a grant's dollars), if it has one."""
    for name in MONEY_PARAMS:
        value = params.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return name
    return None


def money_of(params: Mapping[str, Any]) -> float:
    param = money_param(params)
    return float(params[param]) if param is not None else 0.0


def replay(policy: Policy, recorded: RecordedDecision) -> Replayed:
    """Judge the recorded action again under ``policy``, with the facts of the time."""
    partial = recorded.facts is None
    if recorded.name == BUDGET_GRANT:
        new = policy.evaluate_budget_grant(str(recorded.params.get("budget_id", "")))
    else:
        facts = (
            Facts(requester=recorded.requester, run_totals=recorded.run_totals)
            if recorded.facts is None
            else Facts.from_json(recorded.facts)
        )
        new = policy.evaluate(
            recorded.name,
            recorded.params,
            facts.requester,
            facts.run_totals or None,
            history=History(
                order_refunded=facts.order_refunded,
                payment_refunded=facts.payment_refunded,
                requester_today=facts.requester_today,
            ),
            group_members={group: {facts.requester} for group in facts.groups},
            action_facts=facts.action_facts,
        )
    return Replayed(
        recorded, new, classify(recorded.verdict, recorded.rule_id, recorded.approvers, new), partial
    )


def classify(verdict: str, rule_id: str | None, approvers: Sequence[str], new: PolicyVerdict) -> Change:
    before, after = _RANK.get(verdict, 2), _RANK[new.verdict]
    if after > before:
        return Change.STRICTER
    if after < before:
        return Change.LOOSER
    # Approvers are compared when the record names them (its approval request does; a bare decision row not).
    other_approvers = bool(approvers) and set(approvers) != set(new.approver_roles)
    if rule_id != new.rule_id or (verdict == "require_approval" and other_approvers):
        return Change.DIFFERENT
    return Change.SAME


def meaning(verdict: str, approvers: Sequence[str]) -> str:
    """What a verdict means for the people involved, in words."""
    if verdict == "allow":
        return "allowed without approval"
    if verdict == "deny":
        return "denied"
    who = " or ".join(approvers) if approvers else "an approver"
    return f"needs approval by {who}"


def would_have(verdict: str, approvers: Sequence[str]) -> str:
    """The same, as what would have happened: "would have needed approval by manager"."""
    if verdict == "allow":
        return "would have been allowed without approval"
    if verdict == "deny":
        return "would have been denied"
    return "would have needed approval by " + (" or ".join(approvers) if approvers else "an approver")


@dataclass
class Group:
    count: int = 0
    money: float = 0.0


@dataclass
class Summary:
    """Totals over many replayed decisions, built one at a time so a long window is never held whole."""

    actions: int = 0
    runs: set[int] = field(default_factory=set)
    by_change: dict[Change, int] = field(default_factory=lambda: dict.fromkeys(Change, 0))
    # (action name, change, new verdict, new approvers) → how many, and the money in them
    groups: dict[tuple[str, Change, str, tuple[str, ...]], Group] = field(default_factory=dict)
    runs_affected: set[int] = field(default_factory=set)
    partial: int = 0

    def add(self, replayed: Replayed) -> None:
        self.actions += 1
        self.runs.add(replayed.recorded.run_id)
        self.by_change[replayed.change] += 1
        self.partial += replayed.partial
        if replayed.change is Change.SAME:
            return
        self.runs_affected.add(replayed.recorded.run_id)
        key = (replayed.recorded.name, replayed.change, replayed.new.verdict, replayed.new.approver_roles)
        group = self.groups.setdefault(key, Group())
        group.count += 1
        group.money = round(group.money + replayed.money, 2)

    @property
    def changed(self) -> int:
        return self.actions - self.by_change[Change.SAME]

    def lines(self) -> list[str]:
        """The summary in sentences, e.g. "12 × shop.refund totalling $1,840.00 would have needed approval by
        manager (stricter)"."""
        lines = [
            f"{_count(self.actions, 'decision')} in {_count(len(self.runs), 'run')} replayed: {self.changed} would "
            f"change ({self.by_change[Change.STRICTER]} stricter, {self.by_change[Change.LOOSER]} looser, "
            f"{self.by_change[Change.DIFFERENT]} by another rule or approvers), in "
            f"{_count(len(self.runs_affected), 'run')}."
        ]
        for (name, change, verdict, approvers), group in self._groups_by_size():
            money = f" totalling ${group.money:,.2f}" if group.money else ""
            lines.append(f"{group.count} × {name}{money} {would_have(verdict, approvers)} ({change})")
        if self.partial:
            lines.append(
                f"{_count(self.partial, 'decision')} recorded before facts were kept: facts partly "
                "reconstructed (requester and run totals only)."
            )
        return lines

    def as_json(self, runs_listed: int = 1000) -> dict[str, Any]:
        affected = sorted(self.runs_affected)
        return {
            "actions": self.actions,
            "runs": len(self.runs),
            "changed": self.changed,
            "by_change": {str(change): count for change, count in self.by_change.items()},
            "groups": [
                {
                    "action": name,
                    "change": str(change),
                    "verdict": verdict,
                    "approvers": list(approvers),
                    "count": g.count,
                    "money": g.money,
                }
                for (name, change, verdict, approvers), g in self._groups_by_size()
            ],
            "runs_affected": len(affected),
            "runs_affected_ids": affected[:runs_listed],
            "facts_partly_reconstructed": self.partial,
        }

    def _groups_by_size(self) -> list[tuple[tuple[str, Change, str, tuple[str, ...]], Group]]:
        return sorted(self.groups.items(), key=lambda item: (-item[1].count, item[0]))


def as_json(replayed: Replayed) -> dict[str, Any]:
    recorded, new = replayed.recorded, replayed.new
    return {
        "decision": recorded.decision_id,
        "action": recorded.action_id,
        "run": recorded.run_id,
        "name": recorded.name,
        "params": dict(recorded.params),
        "recorded": {
            "verdict": recorded.verdict,
            "rule": recorded.rule_id,
            "approvers": list(recorded.approvers),
            "policy_hash": recorded.policy_hash,
            "meaning": meaning(recorded.verdict, recorded.approvers),
        },
        "replayed": {
            "verdict": new.verdict,
            "rule": new.rule_id,
            "approvers": list(new.approver_roles),
            "policy_hash": new.policy_hash,
            "meaning": meaning(new.verdict, new.approver_roles),
        },
        "change": str(replayed.change),
        "facts_partly_reconstructed": replayed.partial,
    }


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
