"""The facts a condition is given, handed to the CEL library in the parts the conditions to run read.

Converting facts to CEL values is most of the cost of judging an action (about a microsecond a string), and the
totals maps hold a 0.0 for every action name the policy mentions, so a map is only filled when a condition reads
it whole, and otherwise holds just the keys read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.condition_shape import Selection

_SCALARS = frozenset({bool, float, type(None)})
_WALKED_AT_MOST = (
    10_000  # values looked at before giving up on vouching for them (a cycle, or a huge payload)
)


class ZeroFilled:
    """A map of action name → USD: the given amounts, and 0.0 for the action judged and each name in ``zero``."""

    __slots__ = ("_given", "_name", "_zero")

    def __init__(self, zero: Mapping[str, float], name: str, given: Mapping[str, float]) -> None:
        self._zero = zero
        self._name = name
        self._given = given

    def get(self, key: str, default: Any = None) -> Any:
        """The amount under ``key`` as ``whole()`` holds it, without filling the map."""
        if key in self._given:
            return self._given[key]
        if key in self._zero or key == self._name:
            return 0.0
        return default

    def __contains__(self, key: object) -> bool:
        return key in self._given or key in self._zero or key == self._name

    def whole(self) -> dict[str, float]:
        return {**self._zero, self._name: 0.0, **self._given}

    def pick(self, keys: Mapping[str, Selection]) -> dict[str, float]:
        picked = {}
        for key in keys:
            if key in self._given:
                picked[key] = self._given[key]
            elif key in self._zero or key == self._name:
                picked[key] = 0.0
        return picked


def pick(fact: dict[str, Any], selection: Selection) -> Any:
    """The part of a fact that ``selection`` reads, as plain Python values. A fact is a dict of fields, its maps
    of amounts ZeroFilled; below its fields is the caller's data, given whole under each key read."""
    if selection is None:
        return whole(fact)
    picked: dict[str, Any] = {}
    for key, part in selection.items():
        if key not in fact:
            continue
        value = fact[key]
        if type(value) is ZeroFilled:
            picked[key] = value.whole() if part is None else value.pick(part)
        elif part is None or type(value) is not dict:
            picked[key] = value
        else:
            picked[key] = {inner: value[inner] for inner in part if inner in value}
    return picked


def whole(fact: dict[str, Any]) -> dict[str, Any]:
    """A fact with its maps of amounts filled."""
    if any(type(value) is ZeroFilled for value in fact.values()):
        return {key: value.whole() if type(value) is ZeroFilled else value for key, value in fact.items()}
    return fact


def convertible(*values: object) -> bool:
    """Whether the CEL library surely converts these values: JSON-like data (str keys; no string it cannot
    encode, no integer past 64 bits). False means only "not sure"."""
    waiting: list[Any] = list(values)
    walked = len(waiting)
    while waiting:
        value = waiting.pop()
        kind = type(value)
        if kind is str:
            if not value.isascii() and not _encodable(value):
                return False
        elif kind is dict:
            walked += len(value)
            if walked > _WALKED_AT_MOST:
                return False
            for key, item in value.items():
                if type(key) is not str or not (key.isascii() or _encodable(key)):
                    return False
                kind = type(item)
                if kind is float or kind is bool or item is None or (kind is str and item.isascii()):
                    continue  # the common leaves, checked here rather than in turn
                waiting.append(item)
        elif kind is list or kind is tuple:
            walked += len(value)
            if walked > _WALKED_AT_MOST:
                return False
            waiting.extend(value)
        elif kind is int:
            if not -(2**63) <= value < 2**64:
                return False
        elif kind not in _SCALARS:
            return False
    return True


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, which CEL strings cannot hold
        return False
    return True
