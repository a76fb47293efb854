"""Conditions of the common shapes judged in Python, so that most actions are judged without handing any fact to
the CEL library (converting facts costs about a microsecond per string or map key; these checks cost less).

A condition is read into a judge when the policy loads. Judged in Python: ``&&``, ``||``, ``!``, parentheses;
``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``+`` and ``-``; ``has(…)``; ``startsWith`` and ``endsWith``
with a string; facts read by field or plain string key (``action.params.amount``, ``run.totals["shop.refund"]``);
and literals: plain strings, doubles, ``true``, ``false``, ``null`` and lists of plain strings. Anything else (a
function or another method, a macro, an int literal, an escape in a string) is left to CEL: the operand of
``&&`` or ``||`` it is in, or the whole condition when it is not in one (or when a ternary is at the top).

A judge answers True or False only where CEL is certain to give that same boolean: each operator is modelled for
the operand types whose CEL meaning is Python's (a double compared with a double, a string with a string, a
string looked up in a list of strings or a map, a value tested against null) and for nothing else: another type,
a NaN, a missing key or anything the operator was not modelled for gives UNKNOWN, and the condition is then run by
CEL, which says what it means (an error, a heterogeneous comparison). ``&&`` is false when any side is false and
``||`` true when any side is true, as in CEL, where a false (true) side decides whatever the other gives, even
an error; so an operand left to CEL leaves the answer to CEL only when the others do not decide it.

Judges read the facts as ``Policy.evaluate`` builds them (dicts, with maps of amounts as ``ZeroFilled``), once
the caller has vouched that the CEL library converts them all.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from policies.condition_facts import ZeroFilled
from policies.condition_shape import Token, tokenize


class _Unknown:
    """Only CEL can tell: the marker a judge (or any part of one) gives where it does not model what it meets."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()

Facts: TypeAlias = Mapping[str, Any]
# A judge, or any part of one: the facts → a value (True or False for a test), or UNKNOWN.
Judge: TypeAlias = Callable[[Facts], Any]

_DOUBLE = re.compile(r"\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+")
_PLAIN_STRING = re.compile(r""""[^"\\\n]*"|'[^'\\\n]*'""")
_ORDERINGS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}  # `1.0 < x` is `x > 1.0`
_RELATIONS = frozenset({"==", "!=", *_ORDERINGS, "in"})
_AFFIXES: dict[str, Callable[[str, str], bool]] = {"startsWith": str.startswith, "endsWith": str.endswith}
_OPENS = frozenset("([{")
_CLOSES = frozenset(")]}")
_NULL: Final = object()  # the literal `null`, as parsed (a fact's null is Python's None)


class _NotModelled(Exception):
    """The condition holds something judged by CEL alone."""


@dataclass(frozen=True)
class _Literal:
    """A part of a condition known when the policy loads, kept apart so the parts around it are made for it."""

    value: Any


_Part: TypeAlias = "Judge | _Literal"


def judge_of(when: str, facts: Collection[str]) -> Judge | None:
    """A judge for the condition ``when``, or None when it is not of a shape judged in Python. ``facts``: the
    names a condition can read (an identifier that is not one of them, such as a macro's variable, is not
    modelled). A judge gives True or False where CEL surely gives that boolean; anything else means the
    condition is CEL's to run."""
    tokens = tokenize(when)
    if not tokens:
        return None
    try:
        parser = _Parser(tokens, facts)
        judge = parser.expression()
        if parser.at != len(tokens):
            raise _NotModelled
    except _NotModelled:
        return None
    return _judge(judge)


class _Parser:
    """Recursive descent over CEL's precedence: ``||`` < ``&&`` < relations < ``+ -`` < ``!`` < selection."""

    def __init__(self, tokens: list[Token], facts: Collection[str]) -> None:
        self.tokens = tokens
        self.facts = facts
        self.at = 0

    def expression(self) -> _Part:
        parts, certain = self._operands(self._conjunction, "||")
        return parts[0] if len(parts) == 1 and certain else _any(parts, certain=certain)

    def _conjunction(self) -> _Part:
        parts, certain = self._operands(self._relation, "&&")
        return parts[0] if len(parts) == 1 and certain else _all(parts, certain=certain)

    def _operands(self, operand: Callable[[], _Part], joiner: str) -> tuple[tuple[_Part, ...], bool]:
        """The operands joined by ``joiner`` that are judged in Python, and whether that is all of them. An
        operand that is not is stepped over whole: CEL's ``&&`` is false when a side is false (``||`` true when
        a side is true) whatever the other side gives, an error included."""
        parts: list[_Part] = []
        certain = True
        while True:
            start = self.at
            try:
                part = operand()
                if self._peek() not in (None, joiner, "||", ")"):
                    raise _NotModelled  # the operand goes on past what was read: what was read is not it
                parts.append(part)
            except _NotModelled:
                self.at = start
                self._step_over(joiner)
                certain = False
            if self._peek() != joiner:
                break
            self.at += 1
        if not parts:
            raise _NotModelled
        return tuple(parts), certain

    def _step_over(self, joiner: str) -> None:
        """Past one operand: to the next ``joiner`` (or ``||``) outside brackets, a closing bracket, or the end."""
        start = self.at
        depth = 0
        while self.at < len(self.tokens):
            token = self.tokens[self.at]
            if token.kind == "op":
                if token.text in _OPENS:
                    depth += 1
                elif token.text in _CLOSES:
                    if depth == 0:
                        break
                    depth -= 1
                elif depth == 0 and token.text in (joiner, "||"):
                    break
                elif depth == 0 and token.text in ("?", ":"):
                    raise _NotModelled  # a ternary binds looser than `||`: the operand is not what lies between
            self.at += 1
        if self.at == start:
            raise _NotModelled

    def _relation(self) -> _Part:
        left = self._sum()
        relation = self._peek()
        if relation not in _RELATIONS:
            return left
        self.at += 1
        right = self._sum()
        if self._peek() in _RELATIONS:
            raise _NotModelled  # a chain of relations
        if relation in ("==", "!="):
            return _equality(left, right, negated=relation == "!=")
        if relation == "in":
            return _membership(left, right)
        return _ordering(relation, left, right)

    def _sum(self) -> _Part:
        total = self._unary()
        while self._peek() in ("+", "-"):
            subtract = self._take().text == "-"
            total = _arithmetic(operator.sub if subtract else operator.add, total, self._unary())
        return total

    def _unary(self) -> _Part:
        if self._peek() == "!":
            self.at += 1
            return _negation(self._unary())
        return self._primary()

    def _primary(self) -> _Part:
        token = self._take()
        if token.text == "(":
            inner = self.expression()
            self._expect(")")
            return inner
        if token.text == "[":
            return _Literal(self._string_list())
        if token.kind == "string":
            return _Literal(_plain(token))
        if token.kind == "number":
            if _DOUBLE.fullmatch(token.text) is None or not math.isfinite(number := float(token.text)):
                raise _NotModelled  # an int or uint literal, or a double CEL may read otherwise
            return _Literal(number)
        if token.kind != "ident":
            raise _NotModelled
        if token.text in ("true", "false"):
            return _Literal(token.text == "true")
        if token.text == "null":
            return _Literal(_NULL)
        if token.text == "has" and self._peek() == "(":
            self.at += 1
            head, keys, selected = self._path(self._take())
            self._expect(")")
            if not keys or not selected:
                raise _NotModelled  # has() takes a field selection
            return _presence(_lookup(head, keys[:-1]), keys[-1])
        head, keys, _ = self._path(token)
        value = _lookup(head, keys)
        if self._peek() != ".":
            return value
        self.at += 1
        method = self._take().text
        if method not in _AFFIXES:
            raise _NotModelled
        self._expect("(")
        affix = _plain(self._take())
        self._expect(")")
        return _affixed(_AFFIXES[method], value, affix)

    def _path(self, head: Token) -> tuple[str, tuple[str, ...], bool]:
        """A fact and the keys read under it (whether the last was a field selection, not an index)."""
        if head.kind != "ident" or head.text not in self.facts:
            raise _NotModelled
        keys: list[str] = []
        selected = False
        while self._peek() in (".", "["):
            if self._peek() == "." and self._peek(2) == "(":
                break  # a method called on what was read
            if self._take().text == ".":
                field = self._take()
                if field.kind != "ident":
                    raise _NotModelled
                keys.append(field.text)
                selected = True
            else:
                keys.append(_plain(self._take()))
                self._expect("]")
                selected = False
        return head.text, tuple(keys), selected

    def _string_list(self) -> tuple[str, ...]:
        listed: list[str] = []
        while self._peek() != "]":
            listed.append(_plain(self._take()))
            if self._peek() != ",":
                break
            self.at += 1
        self._expect("]")
        return tuple(listed)

    def _peek(self, ahead: int = 0) -> str | None:
        at = self.at + ahead
        return self.tokens[at].text if at < len(self.tokens) else None

    def _take(self) -> Token:
        if self.at >= len(self.tokens):
            raise _NotModelled
        self.at += 1
        return self.tokens[self.at - 1]

    def _expect(self, text: str) -> None:
        if self._take().text != text:
            raise _NotModelled


def _plain(token: Token) -> str:
    """A string literal whose text is its value (no prefix, no escape, not triple-quoted)."""
    if token.kind != "string" or _PLAIN_STRING.fullmatch(token.text) is None:
        raise _NotModelled
    return token.text[1:-1]


def _judge(part: _Part) -> Judge:
    if isinstance(part, _Literal):
        value = part.value
        return lambda facts: value
    return part


def _lookup(head: str, keys: tuple[str, ...]) -> Judge:
    """A fact, then a key of each map in turn: UNKNOWN where one is missing (CEL fails) or not a map."""
    if len(keys) == 1:
        (key,) = keys

        def field(facts: Facts) -> Any:
            value = facts[head]
            kind = type(value)
            return value.get(key, UNKNOWN) if kind is dict or kind is ZeroFilled else UNKNOWN

        return field
    if len(keys) == 2:
        first, second = keys

        def inner(facts: Facts) -> Any:
            value = facts[head]
            kind = type(value)
            if kind is not dict and kind is not ZeroFilled:
                return UNKNOWN
            value = value.get(first, UNKNOWN)
            kind = type(value)
            return value.get(second, UNKNOWN) if kind is dict or kind is ZeroFilled else UNKNOWN

        return inner

    def look(facts: Facts) -> Any:
        value = facts[head]
        for key in keys:
            kind = type(value)
            if kind is dict or kind is ZeroFilled:
                value = value.get(key, UNKNOWN)
            else:
                return UNKNOWN
        return value

    return look


def _presence(container: Judge, key: str) -> Judge:
    def present(facts: Facts) -> Any:
        value = container(facts)
        kind = type(value)
        return key in value if kind is dict or kind is ZeroFilled else UNKNOWN

    return present


def _all(parts: tuple[_Part, ...], *, certain: bool) -> Judge:
    """``&&`` of ``parts`` and, unless ``certain``, of operands left to CEL."""
    judges = tuple(_judge(part) for part in parts)
    if len(judges) == 2 and certain:
        first, second = judges

        def both(facts: Facts) -> Any:
            a = first(facts)
            if a is False:
                return False
            b = second(facts)
            if b is False:
                return False
            return True if a is True and b is True else UNKNOWN

        return both

    def every(facts: Facts) -> Any:
        result: Any = True if certain else UNKNOWN
        for judge in judges:
            value = judge(facts)
            if value is False:
                return False
            if value is not True:
                result = UNKNOWN
        return result

    return every


def _any(parts: tuple[_Part, ...], *, certain: bool) -> Judge:
    """``||`` of ``parts`` and, unless ``certain``, of operands left to CEL."""
    judges = tuple(_judge(part) for part in parts)

    def some(facts: Facts) -> Any:
        result: Any = False if certain else UNKNOWN
        for judge in judges:
            value = judge(facts)
            if value is True:
                return True
            if value is not False:
                result = UNKNOWN
        return result

    return some


def _negation(part: _Part) -> Judge:
    judge = _judge(part)

    def negated(facts: Facts) -> Any:
        value = judge(facts)
        return (value is False) if type(value) is bool else UNKNOWN

    return negated


def _equal(a: Any, b: Any) -> Any:
    """``a == b`` as CEL has it, for the values where it is Python's; else UNKNOWN."""
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    if a is _NULL or b is _NULL:  # a value CEL holds equals null only when it is null
        return (a is None or a is _NULL) and (b is None or b is _NULL)
    kind = type(a)
    if kind is not type(b) or not (kind is str or kind is bool or (kind is float and a == a and b == b)):
        return UNKNOWN
    return a == b


def _equality(left: _Part, right: _Part, *, negated: bool) -> Judge:
    if isinstance(left, _Literal) and not isinstance(right, _Literal):
        left, right = right, left
    if isinstance(right, _Literal) and not isinstance(left, _Literal) and type(right.value) is str:
        judge, text = left, right.value

        def equals_text(facts: Facts) -> Any:
            value = judge(facts)
            same = value == text if type(value) is str else _equal(value, text)
            return same if same is UNKNOWN else same is not negated

        return equals_text
    first, second = _judge(left), _judge(right)

    def equals(facts: Facts) -> Any:
        same = _equal(first(facts), second(facts))
        return same if same is UNKNOWN else same is not negated

    return equals


def _ordering(relation: str, left: _Part, right: _Part) -> Judge:
    if isinstance(left, _Literal) and not isinstance(right, _Literal):
        left, right, relation = right, left, _FLIPPED[relation]
    compare = _ORDERINGS[relation]
    if isinstance(right, _Literal) and not isinstance(left, _Literal) and type(right.value) is float:
        judge, bound = left, right.value

        def against_bound(facts: Facts) -> Any:
            value = judge(facts)
            return compare(value, bound) if type(value) is float and value == value else UNKNOWN

        return against_bound
    first, second = _judge(left), _judge(right)

    def ordered(facts: Facts) -> Any:
        a, b = first(facts), second(facts)
        if type(a) is float and type(b) is float and a == a and b == b:
            return compare(a, b)
        return UNKNOWN

    return ordered


def _membership(left: _Part, right: _Part) -> Judge:
    first, second = _judge(left), _judge(right)

    def member(facts: Facts) -> Any:
        a, b = first(facts), second(facts)
        if type(a) is not str:
            return UNKNOWN
        kind = type(b)
        if kind is dict or kind is ZeroFilled:
            return a in b
        if (kind is list or kind is tuple) and all(type(item) is str for item in b):
            return a in b
        return UNKNOWN

    return member


def _affixed(test: Callable[[str, str], bool], part: _Part, affix: str) -> Judge:
    judge = _judge(part)

    def affixed(facts: Facts) -> Any:
        value = judge(facts)
        return test(value, affix) if type(value) is str else UNKNOWN

    return affixed


def _arithmetic(combine: Callable[[float, float], float], left: _Part, right: _Part) -> Judge:
    first, second = _judge(left), _judge(right)

    def combined(facts: Facts) -> Any:
        a, b = first(facts), second(facts)
        return combine(a, b) if type(a) is float and type(b) is float else UNKNOWN

    return combined
