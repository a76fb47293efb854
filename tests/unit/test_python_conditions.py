"""Conditions judged in Python give CEL's boolean whenever they give one.

The reference is the CEL library itself, run on the same facts whole: random conditions of the shapes judged in
Python (and some that are not), on random facts as `Policy.evaluate` builds them (doubles with NaN and infinity,
ints past 63 bits, nulls, strings, lists, maps, missing keys), compared wherever the judge answers.
"""

from __future__ import annotations

import functools
from typing import Any

import cel
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.condition_facts import ZeroFilled, convertible, whole
from policies.condition_shape import Selection, covers
from policies.conditions import FACTS
from policies.engine import DEFAULT_POLICY, Policy
from policies.python_conditions import UNKNOWN, judge_of

NAMES = ("a.x", "b.y", "c")
ZERO = {"a.x": 0.0, "b.y": 0.0}

paths = st.sampled_from(
    (
        "action.name",
        "action.params",
        "action.params.amount",
        "action.params.note",
        'action.params["to"]',
        "action.params.deep.x",
        "action.read_only",
        "action.destructive",
        "requester.id",
        "requester.roles",
        'requester.today["a.x"]',
        'requester.today["c"]',
        "run.totals",
        'run.totals["b.y"]',
        "order.refunded",
        "payment.refunded",
    )
)
literals = st.sampled_from(
    (
        "0.0",
        "1.5",
        "100.0",
        "1e3",
        ".5",
        '"a.x"',
        '"admin"',
        "''",
        "true",
        "false",
        "null",
        '["a.x", "admin"]',
        "[]",
        "1",  # an int: not judged in Python
    )
)
values = st.one_of(paths, literals)
sums = st.one_of(
    values,
    st.tuples(values, st.sampled_from(("+", "-")), values).map(" ".join),
)
# Operands of one kind, so that most comparisons are of the types judged in Python.
numbers = st.sampled_from(
    (
        "action.params.amount",
        "action.params.deep.x",
        'requester.today["a.x"]',
        'run.totals["b.y"]',
        "order.refunded",
        "payment.refunded",
        "0.0",
        "100.0",
        "2.5e2",
    )
)
number_sums = st.one_of(numbers, st.tuples(numbers, st.sampled_from(("+", "-")), numbers).map(" ".join))
texts = st.sampled_from(
    ("action.name", "requester.id", "action.params.note", 'action.params["to"]', '"a.x"', '"admin"', "null")
)
collections = st.sampled_from(
    (
        "requester.roles",
        "action.params",
        "run.totals",
        "requester.today",
        '["a.x", "admin"]',
        "action.params.to",
    )
)
tests = st.one_of(
    paths,
    st.tuples(sums, st.sampled_from(("==", "!=", "<", "<=", ">", ">=", "in")), sums).map(" ".join),
    st.tuples(number_sums, st.sampled_from(("==", "!=", "<", "<=", ">", ">=")), number_sums).map(" ".join),
    st.tuples(texts, st.sampled_from(("==", "!=")), texts).map(" ".join),
    st.tuples(texts, collections).map(" in ".join),
    st.sampled_from(
        (
            "has(action.params.amount)",
            "has(action.params.deep.x)",
            "has(run.totals.c)",
            "has(requester.id.x)",
            'action.name.startsWith("a.")',
            'action.params.note.endsWith("e")',
            "size(action.params) > 1",  # not judged in Python, nor the rest
            "action.params.amount * 2.0 > 1.0",
            "action.params.amount > 1.0 * 2.0",
            "(action.read_only ? action.params.amount > 1.0 : false)",
        )
    ),
)
conditions = st.recursive(
    tests,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda ab: f"{ab[0]} && {ab[1]}"),
        st.tuples(inner, inner).map(lambda ab: f"{ab[0]} || {ab[1]}"),
        inner.map(lambda a: f"!{a}"),
        inner.map(lambda a: f"({a})"),
        st.tuples(inner, inner, inner).map(lambda abc: f"{abc[0]} ? {abc[1]} : {abc[2]}"),
    ),
    max_leaves=4,
)

scalars = st.one_of(
    st.floats(),  # NaN and the infinities too
    st.sampled_from((0.0, -0.0, 1.5, 100.0, 1000.0)),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.booleans(),
    st.none(),
    st.sampled_from(("a.x", "admin", "note", "", "é")),
    st.text(max_size=4),
)
leaves = st.one_of(scalars, st.lists(scalars, max_size=2), st.tuples(st.sampled_from(("a.x", "admin"))))
params = st.dictionaries(
    st.sampled_from(("amount", "note", "to", "deep")),
    st.one_of(
        st.floats(),
        st.text(max_size=3),
        leaves,
        st.dictionaries(st.sampled_from(("x", "y")), st.one_of(st.floats(), leaves), max_size=2),
    ),
    max_size=4,
)
amounts = st.dictionaries(
    st.sampled_from((*NAMES, "d")), st.one_of(st.floats(), st.integers(0, 9)), max_size=2
)


@st.composite
def facts(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from((*NAMES, "mcp.s.t")))
    return {
        "action": {
            "name": name,
            "params": draw(params),
            "read_only": draw(st.one_of(st.booleans(), scalars)),
            "destructive": draw(st.booleans()),
        },
        "requester": {
            "id": draw(st.sampled_from(("U0ONE", "admin"))),
            "roles": draw(st.lists(st.sampled_from(("admin", "manager")), max_size=2)),
            "today": ZeroFilled(ZERO, name, draw(amounts)),
        },
        "run": {"totals": ZeroFilled(ZERO, name, draw(amounts))},
        "order": {"refunded": draw(st.floats(0, 100))},
        "payment": {"refunded": draw(st.floats())},
    }


@functools.cache
def program(when: str) -> Any:
    return cel.compile(when)


def cel_answer(when: str, given: dict[str, Any]) -> Any:
    try:
        return program(when).execute({fact: whole(value) for fact, value in given.items()})
    except Exception as exc:
        return exc


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conditions, st.lists(facts(), min_size=1, max_size=4))
def test_a_judge_answers_only_as_cel_does(when: str, listed: list[dict[str, Any]]) -> None:
    try:
        program(when)
    except ValueError:
        return  # not CEL (`!` before a list literal, say): the policy would not load
    judge = judge_of(when, FACTS)
    if judge is None:
        return
    for given_facts in listed:
        assert convertible(given_facts["action"]["params"]), "a judge is only given facts CEL converts"
        answer = judge(given_facts)
        if answer is True or answer is False:
            assert cel_answer(when, given_facts) is answer, (when, given_facts)


@pytest.mark.parametrize(
    ("when", "action_params", "expected"),
    [
        ('action.name == "a.x" && action.params.amount > 100.0', {"amount": 250.0}, True),
        ('action.name == "a.x" && action.params.amount > 100.0', {"amount": 50.0}, False),
        ('action.name == "b.y" && action.params.amount > 100.0', {}, False),  # false decides, whatever fails
        ('action.name == "a.x" && action.params.amount > 100.0', {}, UNKNOWN),  # CEL fails: no such key
        ('action.name == "a.x" && action.params.amount > 100.0', {"amount": 250}, UNKNOWN),  # an int
        ("action.params.amount > 100.0", {"amount": float("nan")}, UNKNOWN),
        # The operand goes on past the path (`*` is CEL's): the path alone, a bool here, is not the operand.
        ('action.params.amount * 2.0 > 1.0 || action.name == "b.y"', {"amount": False}, UNKNOWN),
        (
            'order.refunded + action.params.amount > 100.0 || run.totals["a.x"] > 100.0',
            {"amount": 99.0},
            False,
        ),
        ("action.params.planned_for != null", {"planned_for": None}, False),
        ("action.params.planned_for != null", {"planned_for": "2026-01-01"}, True),
        ('"admin" in requester.roles && !action.read_only', {}, True),
        ("has(action.params.amount) && action.params.amount > 10000.0", {"note": "x"}, False),
        ('requester.today["a.x"] + requester.today["b.y"] > 0.0', {}, False),
        ('requester.today["zzz"] > 0.0', {}, UNKNOWN),  # CEL fails: no such key
        ('action.name.startsWith("a.") || action.params.to.endsWith("@x")', {}, True),
        # An operand left to CEL decides nothing the others decide.
        ('"admin" in requester.roles && size(action.params) > 5', {}, UNKNOWN),
        ('requester.id == "U0TWO" && size(action.params) > 5', {}, False),
        ('!("admin" in requester.roles) || action.params.to.matches("x") || action.read_only', {}, UNKNOWN),
        ('action.params.amount > 1.0 * 2.0 && requester.id == "nobody"', {"amount": 5.0}, False),
        ('(size(action.params) > 1 ? true : false) || action.name == "a.x"', {}, True),
        ("!(action.read_only || size(action.params) > 1)", {}, UNKNOWN),
        ('!(action.name == "a.x" || size(action.params) > 1)', {}, False),
    ],
)
def test_examples(when: str, action_params: dict[str, Any], expected: Any) -> None:
    given_facts = {
        "action": {"name": "a.x", "params": action_params, "read_only": False, "destructive": False},
        "requester": {"id": "U0ONE", "roles": ["admin"], "today": ZeroFilled(ZERO, "a.x", {})},
        "run": {"totals": ZeroFilled(ZERO, "a.x", {})},
        "order": {"refunded": 0.0},
        "payment": {"refunded": 0.0},
    }
    judge = judge_of(when, FACTS)
    assert judge is not None
    assert judge(given_facts) is expected
    if expected is not UNKNOWN:
        assert cel_answer(when, given_facts) is expected


@pytest.mark.parametrize(
    "when",
    [
        "size(action.params) > 1",
        "action.params.amount > 10",  # an int literal: CEL compares it with a double its own way
        "-1.0 < action.params.amount",
        'action.name == "a\\x2ex"',
        'action.name == r"a.x"',
        'requester.roles.exists(r, r == "admin")',
        "action.params[action.name] > 1.0",
        'action.read_only ? true : action.name == "a.x"',
        "order.refunded < payment.refunded < 1.0",
        'action.name.contains("x")',
        "has(action)",
        "action.name == `a`",
    ],
)
def test_what_is_left_to_cel(when: str) -> None:
    assert judge_of(when, FACTS) is None


def test_the_packaged_policy_is_judged_in_python() -> None:
    policy = Policy.from_file(DEFAULT_POLICY)
    assert [c.rule.id for c in policy._rules if c.judge is None] == []


def test_zero_filled_reads_as_its_whole_map() -> None:
    totals = ZeroFilled({"a.x": 0.0, "b.y": 0.0}, "c", {"b.y": 5.0, "d": 1.0})
    filled = totals.whole()
    for key in ("a.x", "b.y", "c", "d", "e"):
        assert (key in totals) is (key in filled)
        assert totals.get(key, UNKNOWN) == filled.get(key, UNKNOWN)


def test_covers() -> None:
    amount: dict[str, Selection] = {"action": {"params": {"amount": None}}}
    assert covers(None, amount)
    assert covers({"action": None}, amount)
    assert covers(amount, amount)
    assert not covers(amount, {"action": {"params": None}})
    assert not covers(amount, {"action": {"name": None}})
    assert not covers(amount, None)
    assert covers(amount, {})


class CountingProgram:
    """The compiled condition, counting its runs."""

    def __init__(self, program: Any, runs: list[str]) -> None:
        self._program = program
        self._runs = runs

    def execute(self, context: Any = None) -> Any:
        self._runs.append(self._program.source)
        return self._program.execute(context)

    def variables(self) -> list[str]:
        return list(self._program.variables())


def test_cel_runs_only_where_python_cannot_tell() -> None:
    rules = [
        ("big", 'action.name == "shop.refund" && action.params.amount > 100.0', "require_approval"),
        ("managers", '"manager" in requester.roles && size(action.params) < 3', "allow"),
        ("refunds", 'action.name == "shop.refund"', "deny"),
    ]
    document = {
        "version": 1,
        "roles": {"manager": ["U0MANAGER"]},
        "rules": [{"id": rule_id, "when": when, "verdict": verdict} for rule_id, when, verdict in rules],
        "default": "require_approval",
        "default_approvers": ["manager"],
    }
    policy = Policy.from_text(yaml.safe_dump(document))
    runs: list[str] = []
    for compiled in policy._rules:
        object.__setattr__(compiled, "program", CountingProgram(compiled.program, runs))

    assert policy.evaluate("shop.refund", {"amount": 250.0}, "U1").rule_id == "big"
    assert policy.evaluate("shop.refund", {"amount": 50.0}, "U1").rule_id == "refunds"
    assert runs == []
    # The manager's rule calls a function: CEL runs it, on the facts it reads.
    assert policy.evaluate("shop.refund", {"amount": 50.0}, "U0MANAGER").rule_id == "managers"
    assert runs == ['"manager" in requester.roles && size(action.params) < 3']
    runs.clear()
    # An int amount, and no amount at all: CEL says what they mean.
    assert policy.evaluate("shop.refund", {"amount": 250}, "U1").rule_id == "big"
    missing = policy.evaluate("shop.refund", {}, "U1")
    assert (missing.verdict, missing.rule_id, missing.failed_condition) == ("deny", "big", True)
    assert "amount" in missing.explanation
    assert runs == [policy._rules[0].rule.when] * 2
