"""What a rule's `when` can be known to do without running it, read once when the policy loads.

The CEL library compiles an expression but does not expose its syntax tree, so the expression's tokens are read
here, conservatively: anything not recognised is taken to mean "unknown", which costs speed and never changes a
verdict.

Two things are read:

* the action names a condition can be true for. ``action.name == "a"``, ``"a" == action.name``,
  ``action.name in ["a", "b"]`` and ``action.name.startsWith("p")`` are name tests; ``&&`` narrows (in CEL a false
  side makes ``&&`` false even when the other side fails to evaluate), ``||`` widens, parentheses are looked
  through; anything else (``!=``, ``!``, a ternary, a test on something other than the name) can be true for any
  name. A condition made only of name tests is *decided* by the name alone, without running it.
* which parts of the facts it reads: ``action.params.amount`` reads one parameter, ``run.totals["shop.refund"]``
  one total, ``requester.roles`` one field; a fact used any other way (``size(action.params)``, a method called on
  it, a key computed at run time) is read whole. A condition sees the same values either way, so the facts it is
  given can leave out what it never reads.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

# A part of the facts a condition reads: None for all of it, else the keys it reads and what it reads under each.
Selection: TypeAlias = dict[str, "Selection"] | None

_DEPTH = 2  # keys read under a fact (`action.params.amount`), beyond which a value is given whole

_RAW_STRING = r"""(?:[rR][bB]?|[bB][rR])(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n]*"|'[^'\n]*')"""
_STRING = (
    r"""[bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''"""
    r"""|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')"""
)
_TOKEN = re.compile(
    rf"""(?P<space>\s+|//[^\n]*)
    |(?P<string>{_RAW_STRING}|{_STRING})
    |(?P<number>\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|0[xX][0-9a-fA-F]+[uU]?|\d+[uU]?)
    |(?P<ident>[A-Za-z_]\w*)
    |(?P<op>&&|\|\||==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{{}}])""",
    re.VERBOSE,
)
# A string literal whose text is its value: no prefix, no escapes, not triple-quoted.
_PLAIN_STRING = re.compile(r""""[^"\\\n]*"|'[^'\\\n]*'""")
_OPENS = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class Token:
    kind: str  # "string", "number", "ident" or "op"
    text: str


@dataclass(frozen=True)
class Names:
    """Action names: these exactly, and any starting with one of the prefixes."""

    exact: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()

    def matches(self, name: str) -> bool:
        return name in self.exact or any(name.startswith(prefix) for prefix in self.prefixes)

    def union(self, other: Names) -> Names:
        return Names(self.exact | other.exact, self.prefixes | other.prefixes)

    def intersection(self, other: Names) -> Names:
        exact = {name for name in self.exact if other.matches(name)}
        exact |= {name for name in other.exact if self.matches(name)}
        prefixes = {
            longer
            for mine in self.prefixes
            for theirs in other.prefixes
            for longer in (mine, theirs)
            if longer.startswith(mine) and longer.startswith(theirs)
        }
        return Names(frozenset(exact), frozenset(prefixes))


@dataclass(frozen=True)
class Shape:
    """``names``: the action names the condition can be true for (None: any). ``decided``: the condition is true
    exactly for those names and never fails, so it need not run. ``reads``: fact → the part of it read."""

    names: Names | None
    decided: bool
    reads: Mapping[str, Selection]


def shape_of(when: str, variables: Sequence[str], facts: Collection[str]) -> Shape:
    """The shape of a compiled condition; ``variables`` are the ones the CEL library says it uses."""
    used = {name for name in variables if name in facts}
    tokens = tokenize(when)
    if tokens is None:
        return Shape(None, False, dict.fromkeys(used))
    names, decided = _names(tokens)
    return Shape(names, decided and names is not None, _reads(tokens, used, facts))


def tokenize(when: str) -> list[Token] | None:
    """The expression's tokens without spaces and comments, or None where it holds something not understood."""
    tokens = []
    at = 0
    while at < len(when):
        match = _TOKEN.match(when, at)
        if match is None:
            return None
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(Token(kind, match.group()))
        at = match.end()
    return tokens


def merge(first: Selection, second: Selection) -> Selection:
    """What two readers read together."""
    if first is None or second is None:
        return None
    merged = dict(first)
    for key, part in second.items():
        merged[key] = merge(merged[key], part) if key in merged else part
    return merged


def covers(outer: Mapping[str, Selection] | None, inner: Mapping[str, Selection] | None) -> bool:
    """Whether a reader given what ``outer`` selects sees all that ``inner`` selects."""
    if outer is None:
        return True
    if inner is None:
        return False
    return all(key in outer and covers(outer[key], part) for key, part in inner.items())


def _names(tokens: list[Token]) -> tuple[Names | None, bool]:
    """(names the tokens can be true for or None for any, whether they are true for exactly those names)."""
    ternary = [at for at, token in enumerate(tokens) if token.kind == "op" and token.text in ("?", ":")]
    if not _balanced(tokens) or any(_at_top(tokens, at) for at in ternary):
        return None, False  # a ternary binds loosest of all: its branches are not conjuncts
    alternatives = _split(tokens, "||")
    if len(alternatives) > 1:
        read = [_names(part) for part in alternatives]
        if any(names is None for names, _ in read):
            return None, False
        union = Names()
        for names, _ in read:
            assert names is not None
            union = union.union(names)
        return union, all(decided for _, decided in read)
    conjuncts = _split(tokens, "&&")
    if len(conjuncts) > 1:
        read = [_names(part) for part in conjuncts]
        known = [names for names, _ in read if names is not None]
        if not known:
            return None, False
        narrowed = known[0]
        for names in known[1:]:
            narrowed = narrowed.intersection(names)
        return narrowed, len(known) == len(read) and all(decided for _, decided in read)
    if tokens and tokens[0].text == "(" and _closing(tokens, 0) == len(tokens) - 1:
        return _names(tokens[1:-1])
    test = _name_test(tokens)
    return test, test is not None


def _name_test(tokens: list[Token]) -> Names | None:
    texts = [t.text for t in tokens]
    if texts[:3] == ["action", ".", "name"] and tokens[0].kind == "ident":
        rest = tokens[3:]
        if len(rest) == 2 and rest[0].text == "==" and _plain(rest[1]):
            return Names(exact=frozenset({rest[1].text[1:-1]}))
        called = [t.text for t in rest[:3]] == [".", "startsWith", "("]
        if len(rest) == 5 and called and _plain(rest[3]) and rest[4].text == ")":
            return Names(prefixes=frozenset({rest[3].text[1:-1]}))
        if len(rest) >= 3 and rest[0].text == "in" and rest[1].text == "[" and rest[-1].text == "]":
            listed = rest[2:-1]
            if listed and listed[-1].text == ",":
                listed = listed[:-1]  # a trailing comma
            values = listed[0::2]
            commas = listed[1::2]
            if all(_plain(value) for value in values) and all(comma.text == "," for comma in commas):
                return Names(exact=frozenset(value.text[1:-1] for value in values))
        return None
    if len(tokens) == 5 and _plain(tokens[0]) and texts[1:] == ["==", "action", ".", "name"]:
        return Names(exact=frozenset({tokens[0].text[1:-1]}))
    return None


def _reads(tokens: list[Token], used: set[str], facts: Collection[str]) -> dict[str, Selection]:
    """Each fact the tokens name (as a variable or as a field: over-reading is harmless) → the part read."""
    reads: dict[str, Selection] = {}
    seen: set[str] = set()
    for at, token in enumerate(tokens):
        if token.kind != "ident" or token.text not in facts:
            continue
        path: list[str] = []
        step = at + 1
        while len(path) < _DEPTH:
            following = tokens[step : step + 3]
            texts = [t.text for t in following]
            if (
                len(following) >= 2
                and texts[0] == "."
                and following[1].kind == "ident"
                and texts[2:3] != ["("]
            ):
                path.append(following[1].text)
                step += 2
            elif len(following) == 3 and texts[0] == "[" and _plain(following[1]) and texts[2] == "]":
                path.append(following[1].text[1:-1])
                step += 3
            else:
                break
        selection: Selection = None
        for key in reversed(path):
            selection = {key: selection}
        name = token.text
        reads[name] = merge(reads[name], selection) if name in seen else selection
        seen.add(name)
    for name in used - seen:  # named in a way not read above: given whole
        reads[name] = None
    return reads


def _plain(token: Token) -> bool:
    return token.kind == "string" and _PLAIN_STRING.fullmatch(token.text) is not None


def _balanced(tokens: list[Token]) -> bool:
    stack = []
    for token in tokens:
        if token.kind != "op":
            continue
        if token.text in _OPENS:
            stack.append(_OPENS[token.text])
        elif token.text in _OPENS.values() and (not stack or stack.pop() != token.text):
            return False
    return not stack


def _closing(tokens: list[Token], opening: int) -> int:
    depth = 0
    for at in range(opening, len(tokens)):
        if tokens[at].kind != "op":
            continue
        if tokens[at].text in _OPENS:
            depth += 1
        elif tokens[at].text in _OPENS.values():
            depth -= 1
            if depth == 0:
                return at
    return -1


def _at_top(tokens: list[Token], index: int) -> bool:
    depth = 0
    for token in tokens[:index]:
        if token.kind != "op":
            continue
        if token.text in _OPENS:
            depth += 1
        elif token.text in _OPENS.values():
            depth -= 1
    return depth == 0


def _split(tokens: list[Token], operator: str) -> list[list[Token]]:
    """The tokens split at ``operator`` outside brackets."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "op" and token.text in _OPENS:
            depth += 1
        elif token.kind == "op" and token.text in _OPENS.values():
            depth -= 1
        if depth == 0 and token.kind == "op" and token.text == operator:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts
