"""Loads a policy file once (CEL compiled and its names checked at load) and judges proposed actions: first
matching rule wins. Only the rules whose conditions can be true for the action's name are walked, in order (see
policies.rule_index), and a condition of a common shape is judged in Python where that surely gives CEL's answer
(see policies.python_conditions)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from opentelemetry import trace
from pydantic import ValidationError

from policies.condition_facts import ZeroFilled, convertible, pick, whole
from policies.condition_shape import Selection, Shape, covers, merge, shape_of
from policies.conditions import FACTS, unknown_name
from policies.errors import PolicyError
from policies.model import Budget, PolicyFile, Rule, Verdict
from policies.python_conditions import Judge, judge_of
from policies.rule_index import Plan, RuleIndex

_tracer = trace.get_tracer("aios.policies")
DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")
DEFAULT_RULE_ID = "default"
_PLANS_KEPT = 4096  # plans (by action name) and roles (by user) kept; names and users come from callers
_NAMED_BY = {"rules": ("rule", "id"), "tests": ("test", "name")}  # list in the file → (what, named by)


_QUOTED_ACTION_NAME = re.compile(r"""["']([a-z][a-z0-9_]*(?:\.[A-Za-z0-9_-]+)+)["']""")


@dataclass(frozen=True)
class PolicyVerdict:
    verdict: Verdict
    rule_id: str
    policy_hash: str
    explanation: str
    approver_roles: tuple[str, ...] = ()
    forbid_self_approval: bool = False
    timeout: timedelta | None = None
    escalate_to: tuple[str, ...] = ()
    quorum: int = 1
    # The engine's own deny: a rule's condition failed to evaluate (or gave no boolean), not a rule saying deny.
    failed_condition: bool = False


@dataclass(frozen=True)
class History:
    """What our records say happened before this action, computed by the caller when it judges.

    ``order_refunded``: USD already refunded (executed, or approved and not yet run) on the order the action
    names; ``payment_refunded``: the same on the Stripe payment a ``stripe.refund`` names. ``requester_today``:
    per action name, the ``amount`` the requester moved today (UTC) in other runs, counting actions proposed,
    waiting, approved or executed; denied, rejected, expired and failed ones not.
    """

    order_refunded: float = 0.0
    payment_refunded: float = 0.0
    requester_today: Mapping[str, float] = field(default_factory=dict)


_NO_HISTORY = History()


@dataclass(frozen=True)
class _CompiledRule:
    rule: Rule
    program: Any = field(repr=False)
    shape: Shape = field(repr=False)
    judge: Judge | None = field(repr=False)  # None: the condition is not judged in Python


class Policy:
    """An immutable, loaded policy: roles, compiled rules, and the content hash every decision records."""

    def __init__(
        self,
        document: PolicyFile,
        content_hash: str,
        source: str,
        action_params: Mapping[str, Collection[str]] | None = None,
        text: str = "",
    ) -> None:
        """``action_params`` (action name → its parameter names) lets conditions be checked against the
        actions the connectors really offer; without it, only the facts' own names are checked. ``text`` is
        the file as written, kept so that each version that judges can be stored."""
        self.document = document
        self.hash = content_hash
        self.source = source
        self.text = text
        # The action names the conditions spell out (`run.totals["shop.refund"]`): each gets a 0.0 in the totals
        # so a lookup never misses, whether or not that action is installed (a stored version replayed later).
        self._action_names = sorted(
            {name for rule in document.rules for name in _QUOTED_ACTION_NAME.findall(rule.when)}
        )
        self._rules = [_compile(rule, source, action_params) for rule in document.rules]
        self._zero = dict.fromkeys(self._action_names, 0.0)
        # Each rule indexed by the action names its condition can be true for; the plan for a name is made when
        # the name is first judged.
        index = RuleIndex([(c, c.shape) for c in self._rules])
        self._index = index
        self._every_rule = index.every_rule()
        self._plans: dict[str, Plan[_CompiledRule]] = {}
        self._new_context = _context_type()
        # Verdicts are immutable: each rule's, and the default's, is made once.
        self._matched = {c.rule.id: self._verdict_for(c.rule) for c in self._rules}
        self._default = self._verdict(
            document.default,
            DEFAULT_RULE_ID,
            "no rule matched, so the policy's default applies",
            approvers=tuple(document.default_approvers),
        )
        self._roles_by_user: dict[str, list[str]] = {}

    @classmethod
    def from_text(
        cls,
        text: str,
        source: str = "<policy>",
        action_params: Mapping[str, Collection[str]] | None = None,
    ) -> Policy:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise PolicyError(f"{source}: expected a mapping with version, roles and rules at the top")
        try:
            document = PolicyFile.model_validate(raw)
        except ValidationError as exc:
            raise PolicyError(f"{source}: {_describe(exc, raw)}") from exc
        return cls(document, hashlib.sha256(text.encode()).hexdigest(), source, action_params, text)

    @classmethod
    def from_file(
        cls, path: Path | str | None = None, action_params: Mapping[str, Collection[str]] | None = None
    ) -> Policy:
        path = Path(path) if path else DEFAULT_POLICY
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(
                f"cannot read policy file {path}: {exc.strerror}; check AIOS_POLICY_FILE"
            ) from exc
        return cls.from_text(text, str(path), action_params)

    def check_action_params(self, action_params: Mapping[str, Collection[str]]) -> None:
        """Check the rules that name MCP tools, once their servers are connected: raises PolicyError (one
        line, like a bad policy file) for a tool its server does not offer or a parameter the tool does not
        have, which would otherwise never match or fail closed at every call. ``action_params``: every
        action the bot offers now → its parameter names (``connectors.mcp_tools.params_by_action``)."""
        for compiled in self._rules:
            rule = compiled.rule
            if unknown := unknown_name(
                rule.when, compiled.program.variables(), action_params, mcp_connected=True
            ):
                raise PolicyError(f"{self.source}: rule {rule.id!r}: its `when` names {unknown}")

    @property
    def roles(self) -> Mapping[str, list[str]]:
        return self.document.roles

    def evaluate(
        self,
        action_name: str,
        params: Mapping[str, Any],
        requester: str,
        run_totals: Mapping[str, float] | None = None,
        *,
        history: History | None = None,
        group_members: Mapping[str, Collection[str]] | None = None,
        action_facts: Mapping[str, bool] | None = None,
    ) -> PolicyVerdict:
        """Judge one proposed action. A condition that fails to evaluate blocks the action (fail closed).

        ``run_totals`` maps each action name to the sum of the ``amount`` parameters of that action in the
        run so far, this one included, so a rule can see through a large refund split into small ones;
        ``history`` sees through one split across requests. ``group_members`` (user-group id → user ids)
        lets a requester hold a role through a user group. ``action_facts``: an MCP tool's annotations
        (``read_only``, ``destructive``); both are false for the other actions.
        """
        # A span made current only when it records: making one current costs more than judging most actions, and
        # nothing below starts a span that a span not recorded could be the parent of.
        span = _tracer.start_span("policy.evaluate")
        if not span.is_recording():
            return self._evaluate(
                action_name, params, requester, run_totals, history, group_members, action_facts
            )
        with trace.use_span(span, end_on_exit=True):
            return self._evaluate(
                action_name, params, requester, run_totals, history, group_members, action_facts
            )

    def _evaluate(
        self,
        action_name: str,
        params: Mapping[str, Any],
        requester: str,
        run_totals: Mapping[str, float] | None,
        history: History | None,
        group_members: Mapping[str, Collection[str]] | None,
        action_facts: Mapping[str, bool] | None,
    ) -> PolicyVerdict:
        history = history or _NO_HISTORY
        action = {
            "name": action_name,
            "params": params if type(params) is dict else dict(params),
            "read_only": False,
            "destructive": False,
            **(action_facts or {}),
        }
        name = action["name"]
        if run_totals is None:
            amount = params.get("amount")
            totals: Mapping[str, float] = {
                action_name: float(amount) if isinstance(amount, (int, float)) else 0.0
            }
        else:
            totals = run_totals
        facts = {
            "action": action,
            "requester": {
                "id": requester,
                "roles": self._roles(requester, group_members),
                "today": ZeroFilled(self._zero, action_name, history.requester_today),
            },
            "run": {"totals": ZeroFilled(self._zero, action_name, totals)},
            "order": {"refunded": float(history.order_refunded)},
            "payment": {"refunded": float(history.payment_refunded)},
        }
        # Only values the CEL library surely converts may be left out of what a condition is given, or judged
        # without it: one it cannot convert fails the first rule, whichever that is, so such facts are judged by
        # every rule, whole, in CEL.
        vouched = convertible(
            name, requester, action["params"], action_facts, run_totals, history.requester_today
        )
        if vouched and type(name) is str and type(requester) is str:
            plan = self._plans.get(name) or self._plan(name)
            return self._walk(plan, facts, judged=True)
        return self._walk(self._every_rule, facts, judged=False)

    def _plan(self, name: str) -> Plan[_CompiledRule]:
        if len(self._plans) >= _PLANS_KEPT:
            self._plans.clear()
        plan = self._plans[name] = self._index.plan(name)
        return plan

    def _walk(self, plan: Plan[_CompiledRule], facts: dict[str, Any], *, judged: bool) -> PolicyVerdict:
        """The first rule of ``plan`` that matches. ``judged``: the facts are vouched for, so a condition judged
        in Python may be (CEL runs the others, and those its judge cannot answer for these facts)."""
        context: Any = None
        given: Mapping[str, Selection] | None = None  # the facts' parts the context holds
        for at, (compiled, decided) in enumerate(plan.steps):
            rule = compiled.rule
            if decided:
                return self._matched[rule.id]
            if judged and compiled.judge is not None:
                answer = compiled.judge(facts)
                if answer is True:
                    return self._matched[rule.id]
                if answer is False:
                    continue
            if plan.reads is None:
                if context is None:
                    context = {fact: whole(value) for fact, value in facts.items()}
            elif given is None or not covers(given, compiled.shape.reads):
                # First what this condition and the later ones CEL alone judges read; all that any reads if a
                # condition judged in Python after all needs more.
                given = plan.reads if given is not None else _read_by_cel(plan, at)
                try:
                    context = self._new_context(
                        {fact: pick(facts[fact], part) for fact, part in given.items()}
                    )
                except Exception:  # not convertible after all: as for facts it cannot vouch for
                    return self._walk(self._every_rule, facts, judged=False)
            try:
                matched = compiled.program.execute(context)
            except Exception as exc:  # any failure inside CEL must deny, never allow
                return self._verdict(
                    "deny",
                    rule.id,
                    f"the condition of rule {rule.id} could not be evaluated ({exc}), so the "
                    "action is blocked",
                    failed_condition=True,
                )
            if not isinstance(matched, bool):
                return self._verdict(
                    "deny",
                    rule.id,
                    f"the condition of rule {rule.id} gave {matched!r}, not true or false, "
                    "so the action is blocked",
                    failed_condition=True,
                )
            if matched:
                return self._matched[rule.id]
        return self._default

    def _roles(self, user: str, group_members: Mapping[str, Collection[str]] | None) -> list[str]:
        """``roles_of``, kept per user while no user groups are given (the roles cannot change)."""
        if group_members:
            return self.roles_of(user, group_members)
        roles = self._roles_by_user.get(user)
        if roles is None:
            if len(self._roles_by_user) >= _PLANS_KEPT:
                self._roles_by_user.clear()
            roles = self._roles_by_user[user] = self.roles_of(user)
        return roles

    def budgets_for(self, *, agent: str, channel: str, team: str) -> list[Budget]:
        """The budgets a model call for this agent, in this channel and team, counts against."""
        scope_value = {"agent": agent, "channel": channel, "team": team}
        return [b for b in self.document.budgets if b.match in ("*", scope_value[b.scope])]

    def budget(self, budget_id: str) -> Budget | None:
        return next((b for b in self.document.budgets if b.id == budget_id), None)

    def evaluate_budget_grant(self, budget_id: str) -> PolicyVerdict:
        """More money for a budget is for the budget's approvers (or the default approvers) to give."""
        budget = self.budget(budget_id)
        if budget is None:
            return self._verdict(
                "deny", f"budget:{budget_id}", f"there is no budget {budget_id} in the policy"
            )
        return self._verdict(
            "require_approval",
            f"budget:{budget.id}",
            f"more budget for {budget.id} needs an approver of that budget",
            approvers=tuple(budget.approvers or self.document.default_approvers),
        )

    def members_of(self, roles: Sequence[str]) -> list[str]:
        """The user and user-group ids listed under these roles, in order, without repeats."""
        return list(dict.fromkeys(member for role in roles for member in self.roles.get(role, [])))

    def group_ids(self) -> set[str]:
        """The user-group ids (S…) listed under any role: the caller looks up their members."""
        return {member for members in self.roles.values() for member in members if member.startswith("S")}

    def roles_of(self, user: str, group_members: Mapping[str, Collection[str]] | None = None) -> list[str]:
        """The roles that list ``user``, directly or through a user group whose members are given."""
        groups = group_members or {}
        return sorted(
            role
            for role, members in self.roles.items()
            if any(member == user or user in groups.get(member, ()) for member in members)
        )

    def _verdict_for(self, rule: Rule) -> PolicyVerdict:
        return self._verdict(
            rule.verdict,
            rule.id,
            rule.reason or f"rule {rule.id} matched",
            approvers=tuple(rule.approvers or self.document.default_approvers),
            forbid_self_approval=rule.forbid_self_approval,
            timeout=rule.timeout,
            escalate_to=tuple(rule.escalate_to),
            quorum=rule.quorum,
        )

    def _verdict(
        self,
        verdict: Verdict,
        rule_id: str,
        explanation: str,
        *,
        approvers: tuple[str, ...] = (),
        forbid_self_approval: bool = False,
        timeout: timedelta | None = None,
        escalate_to: tuple[str, ...] = (),
        quorum: int = 1,
        failed_condition: bool = False,
    ) -> PolicyVerdict:
        return PolicyVerdict(
            verdict=verdict,
            rule_id=rule_id,
            policy_hash=self.hash,
            explanation=explanation,
            approver_roles=approvers if verdict == "require_approval" else (),
            forbid_self_approval=forbid_self_approval,
            timeout=timeout,
            escalate_to=escalate_to,
            quorum=quorum,
            failed_condition=failed_condition,
        )


def _read_by_cel(plan: Plan[_CompiledRule], at: int) -> Mapping[str, Selection]:
    """What the condition at step ``at`` reads, and the later conditions that only CEL judges."""
    reads: dict[str, Selection] = dict(plan.steps[at][0].shape.reads)
    for compiled, decided in plan.steps[at + 1 :]:
        if not decided and compiled.judge is None:
            for fact, part in compiled.shape.reads.items():
                reads[fact] = merge(reads[fact], part) if fact in reads else part
    return reads


def _context_type() -> Any:
    import cel  # compiling the rules imported it already

    return cel.Context


def _compile(rule: Rule, source: str, action_params: Mapping[str, Collection[str]] | None) -> _CompiledRule:
    import cel  # here, not at the top: it is slow to import, and most commands never judge an action

    try:
        program = cel.compile(rule.when)
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PolicyError(f"{source}: rule {rule.id!r}: its `when` is not valid CEL: {first_line}") from exc
    if unknown := unknown_name(rule.when, program.variables(), action_params):
        raise PolicyError(f"{source}: rule {rule.id!r}: its `when` names {unknown}")
    shape = shape_of(rule.when, program.variables(), FACTS)
    return _CompiledRule(rule, program, shape, judge_of(rule.when, FACTS))


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    """Name a rule by its id and a test by its name, not by an index, so the message points at the line to fix."""
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = ".".join(str(part) for part in loc) or "top level"
        if len(loc) >= 2 and loc[0] in _NAMED_BY and isinstance(loc[1], int):
            kind, key = _NAMED_BY[str(loc[0])]
            listed = raw.get(str(loc[0]))
            entry = listed[loc[1]] if isinstance(listed, list) and loc[1] < len(listed) else None
            name = entry.get(key) if isinstance(entry, dict) else None
            field = ".".join(str(part) for part in loc[2:]) or f"the {kind}"
            where = f"{kind} {name!r} ({field})" if name else f"{kind} #{loc[1] + 1} ({field})"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
