"""Rules indexed by action name judge exactly as walking every rule in order does.

`naive_verdict` is the reference: every rule of the policy, in order, its condition run on the whole facts (what
the engine did before it indexed rules). Random policies mix name tests, conjunctions, disjunctions across
names, negations, `in` lists, prefixes, ternaries and conditions that fail to evaluate or give no boolean;
random actions include names no rule mentions and values the CEL library cannot convert.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import cel
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.condition_shape import Names, shape_of, tokenize
from policies.conditions import FACTS
from policies.engine import DEFAULT_RULE_ID, History, Policy
from policies.rule_index import RuleIndex

QUOTED_ACTION_NAME = re.compile(r"""["']([a-z][a-z0-9_]*(?:\.[A-Za-z0-9_-]+)+)["']""")
NAMES = ("a.x", "a.y", "b.x", "mcp.s.t", "c")  # "c" is not an action name the totals are filled for
PREFIXES = ("a.", "mcp.", "mcp.s.", "b", "")
ROLES = {"admin": ["U0ADMIN"], "manager": ["U0ONE", "U0ADMIN"]}


def naive_verdict(
    policy: Policy,
    action_name: str,
    params: Mapping[str, Any],
    requester: str,
    run_totals: Mapping[str, float] | None = None,
    *,
    history: History | None = None,
    action_facts: Mapping[str, bool] | None = None,
) -> tuple[str, str, bool, str]:
    """(verdict, rule id, failed condition, explanation), walking every rule in order on the whole facts."""
    amount = params.get("amount")
    own = {action_name: float(amount)} if isinstance(amount, int | float) else {action_name: 0.0}
    history = history or History()
    quoted = sorted({n for rule in policy.document.rules for n in QUOTED_ACTION_NAME.findall(rule.when)})
    zero = dict.fromkeys([*quoted, action_name], 0.0)
    activation = {
        "action": {
            "name": action_name,
            "params": dict(params),
            "read_only": False,
            "destructive": False,
            **(action_facts or {}),
        },
        "requester": {
            "id": requester,
            "roles": policy.roles_of(requester),
            "today": zero | dict(history.requester_today),
        },
        "run": {"totals": zero | (dict(run_totals) if run_totals is not None else own)},
        "order": {"refunded": float(history.order_refunded)},
        "payment": {"refunded": float(history.payment_refunded)},
    }
    for rule in policy.document.rules:
        try:
            matched = compiled(rule.when).execute(activation)
        except Exception as exc:
            explanation = (
                f"the condition of rule {rule.id} could not be evaluated ({exc}), so the action is blocked"
            )
            return "deny", rule.id, True, explanation
        if not isinstance(matched, bool):
            gave = f"gave {matched!r}, not true or false"
            explanation = f"the condition of rule {rule.id} {gave}, so the action is blocked"
            return "deny", rule.id, True, explanation
        if matched:
            return rule.verdict, rule.id, False, rule.reason or f"rule {rule.id} matched"
    return policy.document.default, DEFAULT_RULE_ID, False, "no rule matched, so the policy's default applies"


@functools.cache
def compiled(when: str) -> Any:
    return cel.compile(when)


def quoted(text: str) -> str:
    return f'"{text}"'


name_tests = st.one_of(
    st.sampled_from(NAMES).map(lambda n: f"action.name == {quoted(n)}"),
    st.sampled_from(NAMES).map(lambda n: f"{quoted(n)} == action.name"),
    st.sampled_from(NAMES).map(lambda n: f"action.name != {quoted(n)}"),
    st.lists(st.sampled_from(NAMES), max_size=3).map(
        lambda ns: f"action.name in [{', '.join(quoted(n) for n in ns)}]"
    ),
    st.sampled_from(PREFIXES).map(lambda p: f"action.name.startsWith({quoted(p)})"),
)
other_tests = st.sampled_from(
    (
        "action.params.amount > 100.0",
        "action.params.amount > 10",  # an int amount: a double fails to compare with it
        "action.params.missing > 1",  # fails: no such key
        "action.params.amount",  # gives no boolean unless the amount is one
        "has(action.params.amount)",
        "size(action.params) > 1",
        '"note" in action.params',
        '"admin" in requester.roles',
        'requester.roles.exists(r, r == "manager")',
        'requester.id == "U0ONE"',
        'requester.today["a.x"] > 50.0',
        'requester.today["c"] > 50.0',  # fails unless given: "c" is not filled with 0.0
        "size(requester.today) > 3",
        'run.totals["a.x"] + run.totals["b.x"] > 200.0',
        'run.totals["c"] > 0.0',
        "run.totals.exists(k, run.totals[k] > 500.0)",
        "order.refunded + payment.refunded > 20.0",
        "action.params.amount - order.refunded >= 10.5",
        "100.0 < action.params.amount",
        "action.params.note != null",
        'action.params.to.endsWith("@x")',
        'requester.id in ["U0ONE", "U0ADMIN"]',
        '"admin" in requester.roles && size(action.params) > 1',  # the size is CEL's to judge
        "action.read_only",
        "action.destructive || action.read_only",
        "true",
        "false",
    )
)
conditions = st.recursive(
    st.one_of(name_tests, other_tests),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda ab: f"{ab[0]} && {ab[1]}"),
        st.tuples(inner, inner).map(lambda ab: f"{ab[0]} || {ab[1]}"),
        inner.map(lambda a: f"!({a})"),
        inner.map(lambda a: f"({a})"),
        st.tuples(inner, inner, inner).map(lambda abc: f"({abc[0]}) ? ({abc[1]}) : ({abc[2]})"),
    ),
    max_leaves=5,
)
rules = st.lists(
    st.tuples(conditions, st.sampled_from(("allow", "deny", "require_approval"))), min_size=0, max_size=10
)

odd_values = st.sampled_from(("\ud800", 10**30, object(), {1: "x"}, {"\ud800": 1}))
plain_values = st.one_of(
    st.floats(allow_nan=False, min_value=-1e6, max_value=1e6),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.integers(0, 9), max_size=2),
)
param_values = st.one_of(plain_values, st.dictionaries(st.text(max_size=3), plain_values, max_size=2))
action_names = st.one_of(st.sampled_from(NAMES), st.sampled_from(("a.xy", "mcp.s.u", "zzz", "b", "")))
amounts = st.dictionaries(st.sampled_from(NAMES), st.floats(0, 1000), max_size=2)


@st.composite
def actions(draw: st.DrawFn) -> dict[str, Any]:
    params = draw(st.dictionaries(st.sampled_from(("amount", "note", "to")), param_values, max_size=3))
    if draw(st.integers(0, 9)) == 0:
        params[draw(st.sampled_from(("amount", "deep")))] = draw(odd_values)
    facts = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries({"read_only": st.booleans(), "destructive": st.booleans()}),
            st.just({"name": False}),  # an override no name test expects: judged by every rule
        )
    )
    return {
        "action_name": draw(action_names),
        "params": params,
        "requester": draw(st.sampled_from(("U0ONE", "U0TWO", "U0ADMIN"))),
        "run_totals": draw(st.one_of(st.none(), amounts)),
        "history": draw(
            st.one_of(
                st.none(),
                st.builds(
                    History,
                    order_refunded=st.floats(0, 100),
                    payment_refunded=st.floats(0, 100),
                    requester_today=amounts,
                ),
            )
        ),
        "action_facts": facts,
    }


def policy_text(listed: list[tuple[str, str]]) -> str:
    document = {
        "version": 1,
        "roles": ROLES,
        "rules": [
            {"id": f"r{n}", "when": when, "verdict": verdict} for n, (when, verdict) in enumerate(listed)
        ],
        "default": "require_approval",
        "default_approvers": ["manager"],
    }
    return yaml.safe_dump(document)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules, st.lists(actions(), min_size=1, max_size=6))
def test_indexed_verdicts_are_those_of_every_rule_in_order(
    listed: list[tuple[str, str]], proposed: list[dict[str, Any]]
) -> None:
    policy = Policy.from_text(policy_text(listed))
    for action in proposed:
        judged_both_ways(policy, action)


def judged_both_ways(policy: Policy, action: dict[str, Any]) -> None:
    got = policy.evaluate(**action)
    assert (got.verdict, got.rule_id, got.failed_condition, got.explanation) == naive_verdict(
        policy, **action
    )


@pytest.mark.parametrize(
    ("listed", "action"),
    [
        # The action judged has a 0.0 in the totals even when no rule quotes its name as an action name.
        (
            [('requester.today["c"] > 50.0 || run.totals["c"] > 5.0', "deny"), ("true", "allow")],
            {"action_name": "c", "params": {}, "requester": "U0ONE", "run_totals": {"a.x": 1.0}},
        ),
        (
            [('action.name == "a.x" && run.totals["c"] > 5.0', "deny"), ('action.name == "a.x"', "allow")],
            {"action_name": "a.x", "params": {"amount": 3.0}, "requester": "U0ONE"},
        ),
        # What the CEL library cannot convert fails the first rule, even one no name test lets through.
        (
            [('action.name == "b.x"', "allow"), ('action.name == "a.x"', "allow")],
            {"action_name": "a.x", "params": {"note": "\ud800"}, "requester": "U0ONE"},
        ),
        (
            [('action.name == "b.x"', "allow")],
            {"action_name": "a.x", "params": {"amount": 10**30}, "requester": "U0ONE"},
        ),
        # An annotation that replaces the name is judged by every rule.
        (
            [('action.name == "a.x"', "allow"), ("action.name", "deny")],
            {"action_name": "a.x", "params": {}, "requester": "U0ONE", "action_facts": {"name": True}},
        ),
    ],
)
def test_examples_judge_as_every_rule_in_order(listed: list[tuple[str, str]], action: dict[str, Any]) -> None:
    judged_both_ways(Policy.from_text(policy_text(listed)), action)


def test_a_rule_that_cannot_match_the_name_is_not_walked() -> None:
    when = {
        "refund": 'action.name == "shop.refund" && action.params.amount > 100.0',
        "either": 'action.name in ["shop.refund", "email.send"] || action.name == "cms.publish"',
        "mcp": 'action.name.startsWith("mcp.git.") && action.read_only',
        "roles": '"admin" in requester.roles',
        "not-email": 'action.name != "email.send"',
        "refunds": 'action.name == "shop.refund"',
    }
    shapes = [(rule, shape_of(text, cel.compile(text).variables(), FACTS)) for rule, text in when.items()]
    index = RuleIndex(shapes)

    def walked(name: str) -> list[tuple[str, bool]]:
        return list(index.plan(name).steps)

    # A rule made only of name tests matches without running, and ends the walk.
    assert walked("shop.refund") == [("refund", False), ("either", True)]
    assert walked("cms.publish") == [("either", True)]
    assert walked("mcp.git.status") == [("mcp", False), ("roles", False), ("not-email", False)]
    assert walked("tickets.open") == [("roles", False), ("not-email", False)]
    assert index.plan("tickets.open").reads == {"requester": {"roles": None}, "action": {"name": None}}


def test_name_tests_are_read_from_the_conjuncts() -> None:
    def names(text: str) -> tuple[Names | None, bool]:
        shape = shape_of(text, cel.compile(text).variables(), FACTS)
        return shape.names, shape.decided

    refund = Names(frozenset({"shop.refund"}))
    assert names('action.name == "shop.refund"') == (refund, True)
    assert names("'shop.refund' == action.name // refunds\n") == (refund, True)
    assert names('(action.name == "shop.refund") && action.params.amount > 1.0') == (refund, False)
    assert names('action.params.amount > 1.0 && action.name == "shop.refund"') == (refund, False)
    assert names('action.name in ["a.x", "b.x",]') == (Names(frozenset({"a.x", "b.x"})), True)
    assert names('action.name == "a.x" || action.name.startsWith("mcp.")') == (
        Names(frozenset({"a.x"}), frozenset({"mcp."})),
        True,
    )
    assert names('action.name.startsWith("mcp.") && action.name.startsWith("mcp.git.")') == (
        Names(prefixes=frozenset({"mcp.git."})),
        True,
    )
    assert names('action.name in ["a.x", "b.x"] && action.name == "b.x"') == (Names(frozenset({"b.x"})), True)
    # Not understood, so true for any name: a negation, a ternary, a side that is not a name test, an escape.
    for text in (
        'action.name != "a.x"',
        '!(action.name == "a.x")',
        'action.name == "a.x" || action.read_only',
        'action.name == "a.x" ? true : action.read_only',
        'action.name == "a\\x2ex"',
        'action.name == r"a.x"',
        'action.params.name == "a.x"',
    ):
        assert names(text) == (None, False), text


def test_what_a_condition_reads() -> None:
    def reads(text: str) -> Mapping[str, Any]:
        return shape_of(text, cel.compile(text).variables(), FACTS).reads

    assert reads('action.name == "a.x" && action.params.amount > 1.0') == {
        "action": {"name": None, "params": {"amount": None}}
    }
    assert reads('run.totals["a.x"] + requester.today["b.x"] > 1.0 && "x" in requester.roles') == {
        "run": {"totals": {"a.x": None}},
        "requester": {"today": {"b.x": None}, "roles": None},
    }
    assert reads('action.name.startsWith("a") && action.params["to"].endsWith("@x")') == {
        "action": {"name": None, "params": {"to": None}}
    }
    assert reads("size(action.params) > 1 && order.refunded > 0.0") == {
        "action": {"params": None},
        "order": {"refunded": None},
    }
    assert reads('run.totals.exists(k, k == "a.x") || action.params[action.name] > 1') == {
        "run": {"totals": None},
        "action": {"params": None, "name": None},
    }
    assert reads("[action].exists(a, a.read_only)") == {"action": None}


def test_unreadable_text_is_read_as_anything() -> None:
    assert tokenize("action.name == `a`") is None
    shape = shape_of("action.name == `a`", ["action"], FACTS)
    assert (shape.names, shape.decided, dict(shape.reads)) == (None, False, {"action": None})
