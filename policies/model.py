"""The policy file's schema (the README's "The policy file"), validated with pydantic."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.windows import PublishingWindow

Verdict = Literal["allow", "deny", "require_approval"]

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MEMBER = re.compile(r"^[USW][A-Z0-9]{2,}$")
_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``"4h"``, ``"30m"``, ``"2d"`` (or plain seconds) → timedelta."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float):
        return timedelta(seconds=text)
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write a number and a unit, like 30m, 4h or 2d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def optional_duration(value: object) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, str | int | float | timedelta):
        return parse_duration(value)
    raise ValueError("expected a duration like 30m, 4h or 2d")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    when: str = Field(min_length=1)
    verdict: Verdict
    approvers: list[str] = []
    forbid_self_approval: bool = False
    timeout: timedelta | None = None
    escalate_to: list[str] = []
    quorum: int = Field(
        default=1, ge=1, le=10, description="distinct approvers needed; the requester never counts"
    )
    reason: str = ""

    _timeout = field_validator("timeout", mode="before")(lambda value: optional_duration(value))

    @field_validator("when", mode="before")
    @classmethod
    def _when_is_text(cls, value: object) -> object:
        # YAML reads an unquoted `when: true` as a boolean; CEL wants the text.
        if isinstance(value, bool):
            word = str(value).lower()
            raise ValueError(f'YAML read `when: {word}` as a boolean; quote it: when: "{word}"')
        return value


class Budget(BaseModel):
    """A spending limit on model calls for one agent, channel or team (``match: "*"``: each one separately)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")  # no ':', which separates account keys
    scope: Literal["agent", "channel", "team"]
    match: str = "*"
    period: Literal["day", "month"] = "day"
    limit_usd: float = Field(gt=0)
    warn_at: float = Field(default=0.8, gt=0, le=1, description="soft warning at this share of the limit")
    approvers: list[str] = []
    grant_usd: float | None = Field(default=None, gt=0, description="what one grant adds; the limit if unset")

    @property
    def grant(self) -> float:
        return self.grant_usd if self.grant_usd is not None else self.limit_usd


class KindRetention(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ttl: timedelta | None = None  # a memory of this kind is forgotten this long after it was made
    max: int | None = Field(default=None, ge=1)  # per team; beyond it the oldest, least used go first

    _ttl = field_validator("ttl", mode="before")(lambda value: optional_duration(value))


class MemoryRetention(BaseModel):
    """How long memories are kept, how many, and when old, little-used ones are folded into summaries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    summarise_after: timedelta | None = None
    kinds: dict[str, KindRetention] = {}

    _after = field_validator("summarise_after", mode="before")(lambda value: optional_duration(value))


class Publishing(BaseModel):
    """When posts may go out, in the team's time zone (AIOS_TIMEZONE); no windows: any time."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    windows: tuple[PublishingWindow, ...] = ()

    @field_validator("windows", mode="before")
    @classmethod
    def _parse_windows(cls, value: object) -> object:
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(
            isinstance(w, str | PublishingWindow) for w in value
        ):
            raise ValueError('expected a list of windows like ["tue 09:00-12:00", "fri 09:00-12:00"]')
        return tuple(w if isinstance(w, PublishingWindow) else PublishingWindow.parse(w) for w in value)


class Expectation(BaseModel):
    """What a policy test expects the engine to say; all but the verdict are checked only when given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: Verdict
    rule: str | None = Field(default=None, min_length=1)
    approvers: list[str] | None = None
    forbid_self_approval: bool | None = None


class PolicyTest(BaseModel):
    """One case of the file's `tests:`: an action as an agent would propose it, what the policy would see
    besides it (named after the facts its conditions read), and the verdict expected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    action: str = Field(min_length=1)
    params: dict[str, Any] = {}
    requester: str = "U0REQUESTER"
    groups: list[str] = []  # user groups (S…) the requester is in, for roles held through a group
    run_totals: dict[str, float] | None = None  # run.totals; unset: this action's own amount
    order_refunded: float = 0.0  # order.refunded
    payment_refunded: float = 0.0  # payment.refunded
    requester_today: dict[str, float] = {}  # requester.today
    read_only: bool = False  # action.read_only (an MCP tool's annotation)
    destructive: bool = False  # action.destructive
    expect: Expectation

    @field_validator("requester")
    @classmethod
    def _requester_is_a_user(cls, requester: str) -> str:
        if not _USER.match(requester):
            raise ValueError(f"{requester!r} is not a Slack user id (U…)")
        return requester

    @field_validator("groups")
    @classmethod
    def _groups_are_user_groups(cls, groups: list[str]) -> list[str]:
        for group in groups:
            if not _GROUP.match(group):
                raise ValueError(f"{group!r} is not a Slack user-group id (S…)")
        return groups


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    roles: dict[str, list[str]] = {}
    rules: list[Rule] = []
    default: Verdict = "require_approval"
    default_approvers: list[str] = []
    budgets: list[Budget] = []
    memory: MemoryRetention = MemoryRetention()
    publishing: Publishing = Publishing()
    tests: list[PolicyTest] = []  # run by `aios policy check`; the bot itself never reads them

    @field_validator("roles")
    @classmethod
    def _members_are_slack_ids(cls, roles: dict[str, list[str]]) -> dict[str, list[str]]:
        for role, members in roles.items():
            for member in members:
                if not _MEMBER.match(member):
                    raise ValueError(
                        f"role {role!r} lists {member!r}, which is not a Slack user id (U…) or user-group id (S…)"
                    )
        return roles

    @model_validator(mode="after")
    def _references_resolve(self) -> PolicyFile:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule {rule.id!r} appears twice; rule ids must be unique")
            seen.add(rule.id)
            for role in [*rule.approvers, *rule.escalate_to]:
                if role not in self.roles:
                    raise ValueError(f"rule {rule.id!r} names role {role!r}, which is not under roles:")
            if rule.verdict == "require_approval" and not (rule.approvers or self.default_approvers):
                raise ValueError(f"rule {rule.id!r} requires approval but names no approvers")
            if rule.escalate_to and rule.timeout is None:
                raise ValueError(f"rule {rule.id!r} names escalate_to but no timeout after which to escalate")
        for role in self.default_approvers:
            if role not in self.roles:
                raise ValueError(f"default_approvers names role {role!r}, which is not under roles:")
        budget_ids: set[str] = set()
        for budget in self.budgets:
            if budget.id in budget_ids:
                raise ValueError(f"budget {budget.id!r} appears twice; budget ids must be unique")
            budget_ids.add(budget.id)
            for role in budget.approvers or self.default_approvers:
                if role not in self.roles:
                    raise ValueError(f"budget {budget.id!r} names role {role!r}, which is not under roles:")
        if self.default == "require_approval" and not self.default_approvers:
            raise ValueError("default is require_approval, so default_approvers must name at least one role")
        test_names: set[str] = set()
        for test in self.tests:
            if test.name in test_names:
                raise ValueError(f"test {test.name!r} appears twice; test names must be unique")
            test_names.add(test.name)
        return self
