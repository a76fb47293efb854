"""A policy file's own tests (its `tests:` cases) run through the engine, and its rules evaluated once against a
typical action of each installed kind, so that a condition the engine cannot evaluate (a string compared with a
number, a parameter that action does not have) is found before the policy is deployed instead of denying
every such action later. Pure: the caller passes the loaded policy and the installed action models.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from policies.conditions import MCP_PREFIX
from policies.engine import DEFAULT_RULE_ID, History, Policy, PolicyVerdict
from policies.model import PolicyTest
from policies.replay import BUDGET_GRANT

SAMPLE_REQUESTER = "U0SAMPLE"
_QUOTED_KEY = re.compile(r"^'[^']*'$")

ActionModels = Mapping[str, type[BaseModel]]


@dataclass(frozen=True)
class Outcome:
    verdict: str
    rule: str
    approvers: tuple[str, ...]
    forbid_self_approval: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "rule": self.rule,
            "approvers": list(self.approvers),
            "forbid_self_approval": self.forbid_self_approval,
        }


@dataclass(frozen=True)
class CaseResult:
    """One test's result: what the engine said (None when the case could not be judged) and what differs."""

    test: PolicyTest
    got: Outcome | None
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_json(self) -> dict[str, Any]:
        expect = self.test.expect
        return {
            "name": self.test.name,
            "action": self.test.action,
            "passed": self.passed,
            "expected": expect.model_dump(exclude_none=True),
            "got": self.got.as_json() if self.got is not None else None,
            "failures": list(self.failures),
        }


@dataclass(frozen=True)
class RuleProblem:
    """A rule whose condition the engine could not evaluate for these kinds of action (it would deny them)."""

    rule: str
    actions: tuple[str, ...]
    error: str

    def message(self) -> str:
        kinds = ", ".join(self.actions)
        return (
            f"its `when` could not be evaluated for a typical {kinds} ({self.error}), so such an action "
            "would be denied"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "actions": list(self.actions),
            "error": self.error,
            "message": self.message(),
        }


@dataclass(frozen=True)
class CheckReport:
    results: list[CaseResult]
    problems: list[RuleProblem]
    untested_rules: list[str] = field(default_factory=list)  # rules no test reached: shown, not a failure
    publishing_windows: list[str] = field(default_factory=list)  # when posts may go out; none: any time

    @property
    def ok(self) -> bool:
        return not self.problems and all(result.passed for result in self.results)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tests": [result.as_json() for result in self.results],
            "passed": sum(result.passed for result in self.results),
            "failed": sum(not result.passed for result in self.results),
            "problems": [problem.as_json() for problem in self.problems],
            "untested_rules": self.untested_rules,
            "publishing_windows": self.publishing_windows,
        }


def check(policy: Policy, models: ActionModels | None) -> CheckReport:
    """The file's tests and the rules' evaluation problems. ``models``: each installed action's model by name
    (None: parameters are taken as given and no rule is evaluated against samples)."""
    results = run_tests(policy, models)
    reached = {result.got.rule for result in results if result.got is not None}
    untested = [rule.id for rule in policy.document.rules if rule.id not in reached]
    windows = [str(window) for window in policy.document.publishing.windows]
    return CheckReport(results, rule_problems(policy, models or {}), untested, windows)


def run_tests(policy: Policy, models: ActionModels | None) -> list[CaseResult]:
    return [run_test(policy, test, models) for test in policy.document.tests]


def run_test(policy: Policy, test: PolicyTest, models: ActionModels | None) -> CaseResult:
    params, refused = _params(test, models)
    if refused is not None:
        return CaseResult(test, None, (refused,))
    verdict = _judge(policy, test, params)
    got = Outcome(verdict.verdict, verdict.rule_id, verdict.approver_roles, verdict.forbid_self_approval)
    return CaseResult(test, got, tuple(_differences(policy, test, got, verdict)))


def _params(test: PolicyTest, models: ActionModels | None) -> tuple[dict[str, Any], str | None]:
    """The parameters as the engine sees them at run time (the action model's JSON form), or why the case
    cannot be an action any agent could propose."""
    if (test.read_only or test.destructive) and not test.action.startswith(MCP_PREFIX):
        return (
            {},
            "read_only and destructive are annotations of MCP tools (mcp.…); other actions have neither",
        )
    if models is None or (test.action not in models and test.action.startswith(MCP_PREFIX)):
        # An MCP server's tools are known only once it is connected: its parameters are taken as given.
        return dict(test.params), None
    model = models.get(test.action)
    if model is None:
        close = _closest(test.action, models)
        return {}, f'no connector offers action "{test.action}"' + (
            f" (did you mean {close}?)" if close else ""
        )
    try:
        action = model.model_validate(test.params)
    except ValidationError as exc:
        return {}, f"its params are not a valid {test.action}: {_invalid(exc, model)}"
    return action.model_dump(mode="json"), None


def _judge(policy: Policy, test: PolicyTest, params: Mapping[str, Any]) -> PolicyVerdict:
    if test.action == BUDGET_GRANT:
        return policy.evaluate_budget_grant(str(params.get("budget_id", "")))
    return policy.evaluate(
        test.action,
        params,
        test.requester,
        test.run_totals,
        history=History(
            order_refunded=test.order_refunded,
            payment_refunded=test.payment_refunded,
            requester_today=test.requester_today,
        ),
        group_members={group: {test.requester} for group in test.groups},
        action_facts={"read_only": test.read_only, "destructive": test.destructive},
    )


def _differences(policy: Policy, test: PolicyTest, got: Outcome, verdict: PolicyVerdict) -> list[str]:
    expect, failures = test.expect, []
    if got.verdict != expect.verdict:
        failures.append(f"expected verdict {expect.verdict}, got {got.verdict}")
    if expect.rule is not None and got.rule != expect.rule:
        known = [rule.id for rule in policy.document.rules] + [DEFAULT_RULE_ID]
        hint = ""
        if expect.rule not in known:
            close = _closest(expect.rule, known)
            hint = " (no rule has that id" + (f"; did you mean {close}?)" if close else ")")
        failures.append(f"expected rule {expect.rule}{hint}, got {got.rule}")
    if expect.approvers is not None and sorted(got.approvers) != sorted(expect.approvers):
        failures.append(
            f"expected approvers [{', '.join(expect.approvers)}], got [{', '.join(got.approvers)}]"
        )
    if expect.forbid_self_approval is not None and got.forbid_self_approval != expect.forbid_self_approval:
        failures.append(
            f"expected forbid_self_approval {str(expect.forbid_self_approval).lower()}, "
            f"got {str(got.forbid_self_approval).lower()}"
        )
    if failures and verdict.failed_condition:
        failures.append(
            f"the engine denied it: rule {got.rule}'s `when` could not be evaluated "
            f"({_error_of(verdict.explanation, got.rule)})"
        )
    return failures


def rule_problems(policy: Policy, models: ActionModels) -> list[RuleProblem]:
    """Each rule evaluated on its own against a typical action of every installed kind (once with small values
    and optional parameters left out, once with large values and every parameter given). The engine denies
    an action whose condition it cannot evaluate, so each failure is reported with the kinds it hits."""
    samples = [
        (name, params)
        for name, model in sorted(models.items())
        if name != BUDGET_GRANT
        for params in (sample_params(model, large=False), sample_params(model, large=True))
    ]
    action_params = {name: list(model.model_fields) for name, model in models.items()}
    problems = []
    for rule in policy.document.rules:
        # The rule alone, set to allow, before a default that asks: a denial by the rule can only mean that
        # the engine could not evaluate its condition (its explanation says why).
        alone = Policy(
            policy.document.model_copy(
                update={
                    "rules": [rule.model_copy(update={"verdict": "allow"})],
                    "default": "require_approval",
                }
            ),
            policy.hash,
            policy.source,
            action_params,
        )
        failing: dict[str, list[str]] = {}
        for name, params in samples:
            verdict = alone.evaluate(name, params, SAMPLE_REQUESTER)
            if verdict.failed_condition and verdict.rule_id == rule.id:
                kinds = failing.setdefault(_error_of(verdict.explanation, rule.id), [])
                if name not in kinds:
                    kinds.append(name)
        problems += [RuleProblem(rule.id, tuple(kinds), error) for error, kinds in failing.items()]
    return problems


def sample_params(model: type[BaseModel], *, large: bool) -> dict[str, Any]:
    """A typical action's parameters as the engine sees them (the model's JSON form), built from its JSON
    schema: only the types matter, so a rule that compares them wrongly fails as it would at run time."""
    schema = model.model_json_schema(mode="serialization")
    return _object_sample(schema, schema.get("$defs", {}), large)


def _object_sample(schema: Mapping[str, Any], defs: Mapping[str, Any], large: bool) -> dict[str, Any]:
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    sample: dict[str, Any] = {}
    for name, prop in properties.items():
        if name not in required and not large and _nullable(prop):
            sample[name] = None
        else:
            sample[name] = _sample(prop, defs, large)
    return sample


def _sample(schema: Mapping[str, Any], defs: Mapping[str, Any], large: bool) -> Any:
    if "$ref" in schema:
        return _sample(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, large)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][-1 if large else 0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [option for option in schema[key] if option.get("type") != "null"]
            return _sample(options[0], defs, large) if options else None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "string":
        return "2026-01-01T00:00:00Z" if schema.get("format") == "date-time" else "sample"
    if kind == "integer":
        return 1000 if large else 1
    if kind == "number":
        return 1000.0 if large else 1.0
    if kind == "boolean":
        return large
    if kind == "array":
        items = schema.get("items")
        return [_sample(items, defs, large)] if isinstance(items, Mapping) and large else []
    if kind == "object":
        return _object_sample(schema, defs, large)
    return None


def _nullable(schema: Mapping[str, Any]) -> bool:
    return any(option.get("type") == "null" for option in schema.get("anyOf", ()))


def _error_of(explanation: str, rule_id: str) -> str:
    """The reason inside the engine's explanation, shortened: CEL's own messages run to a paragraph."""
    prefix = f"the condition of rule {rule_id} "
    text = explanation.removeprefix(prefix)
    match = re.fullmatch(r"could not be evaluated \((?P<error>.*)\), so the action is blocked", text, re.S)
    if match is None:
        return text.removesuffix(", so the action is blocked")
    error = match.group("error").strip()
    if _QUOTED_KEY.match(error):
        return f"no such key {error}"
    first = error.split(". ", 1)[0]
    if len(first) > 80 and ":" in first:
        first = first.split(":", 1)[0]
    return first


def _invalid(exc: ValidationError, model: type[BaseModel]) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "params"
        message = error["msg"]
        if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
            close = _closest(str(error["loc"][0]), model.model_fields)
            message += f" (did you mean {close}?)" if close else ""
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def _closest(name: str, known: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return close[0] if close else None
