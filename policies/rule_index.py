"""Rules indexed by the action names their conditions can be true for, so that judging an action walks only the
rules that could match it, in the policy's order: the first that matches still wins.

A rule left out for an action is one whose condition is false for that action's name whatever else the facts
hold (see policies.condition_shape), so walking the rest gives the verdict walking them all would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from policies.condition_shape import Selection, Shape, merge

R = TypeVar("R")


@dataclass(frozen=True)
class Plan(Generic[R]):
    """The rules to walk for one action name, in order: each with whether its name alone decides it (it matches
    without running; nothing after it is listed). ``reads``: the facts the rules that run read, or None for every
    fact whole, as a dict."""

    steps: tuple[tuple[R, bool], ...]
    reads: Mapping[str, Selection] | None


class RuleIndex(Generic[R]):
    def __init__(self, rules: Sequence[tuple[R, Shape]]) -> None:
        self._rules = list(rules)
        self._named: dict[str, list[int]] = {}
        self._prefixed: list[tuple[str, int]] = []
        self._anywhere: list[int] = []
        for at, (_, shape) in enumerate(self._rules):
            if shape.names is None:
                self._anywhere.append(at)
                continue
            for name in shape.names.exact:
                self._named.setdefault(name, []).append(at)
            self._prefixed += [(prefix, at) for prefix in shape.names.prefixes]

    def plan(self, name: str) -> Plan[R]:
        candidates = {*self._named.get(name, ()), *self._anywhere}
        candidates |= {at for prefix, at in self._prefixed if name.startswith(prefix)}
        steps: list[tuple[R, bool]] = []
        reads: dict[str, Selection] = {}
        for at in sorted(candidates):
            rule, shape = self._rules[at]
            steps.append((rule, shape.decided))
            if shape.decided:
                break
            for fact, part in shape.reads.items():
                reads[fact] = merge(reads[fact], part) if fact in reads else part
        return Plan(tuple(steps), reads)

    def every_rule(self) -> Plan[R]:
        """Each rule in order, run, reading the facts whole: for facts the index cannot vouch for."""
        return Plan(tuple((rule, False) for rule, _ in self._rules), None)
