"""`/aios calendar [month]`: per week of a month, what is planned, drafted, scheduled and published, in the team's
time zone, from the planned slots and what the CMS's reader says of their posts (and, where the CMS lists posts
by date, as the sandbox does, the posts planned outside the calendar).

A planned slot whose draft still holds the body it was created with is an empty slot ("planned"); once the body
changes the draft is "drafted", and the CMS says when it is scheduled or published. In Slack it is Block Kit (one
section a week, within Slack's limits); in a terminal, a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from agents import months
from agents.dates import place
from agents.months import UnreadableMonth as UnreadableMonth  # raised by read_month
from connectors.errors import ConnectorError
from connectors.registry import ConnectorRegistry
from connectors.wordpress_cms import PostSummary, body_digest
from runtime.mrkdwn import escape, truncate
from storage.ids import format_id
from storage.planned_slots import PlannedSlots
from storage.records import PlannedSlot, ProposedAction
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

if TYPE_CHECKING:
    from rich.table import Table

USAGE = (
    "`/aios calendar` (this month), `/aios calendar december`, `/aios calendar 2026-12` or "
    "`/aios calendar next month`"
)
MARKS = {"planned": "○", "drafted": "✎", "scheduled": "⏰", "published": "✓"}
EMOJI = {
    "planned": ":white_circle:",
    "drafted": ":pencil2:",
    "scheduled": ":calendar:",
    "published": ":rocket:",
}
HEADER_MAX = HeaderBlock.text_max_length  # 150
SECTION_MAX = SectionBlock.text_max_length  # 3,000
TITLE_MAX = 120


@dataclass(frozen=True)
class Entry:
    at: datetime  # in the team's zone
    status: str  # planned, drafted, scheduled, published
    title: str
    slug: str
    angle: str = ""
    action: int | None = None  # a planned slot's draft: `/aios why A-…` shows what it was planned from


@dataclass(frozen=True)
class Week:
    monday: date
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True)
class MonthCalendar:
    month: date  # its first day
    zone: ZoneInfo
    weeks: list[Week]
    problem: str | None = None  # the CMS could not be read: slots only


def read_month(text: str, today: date) -> date:
    """The first day of the month ``text`` names (see agents.months); nothing is this month. Raises
    UnreadableMonth, saying what is accepted."""
    if not text.strip():
        return today.replace(day=1)
    try:
        return months.read_month(text, today)
    except UnreadableMonth:
        raise UnreadableMonth(f"I can't read “{text.strip()[:40]}” as a month; try {USAGE}") from None


@runtime_checkable
class SlugReader(Protocol):
    """What the calendar asks a CMS about planned posts (WordPress and the sandbox)."""

    async def posts_by_slug(self, slugs: Sequence[str]) -> list[PostSummary]: ...


@runtime_checkable
class DatedReader(Protocol):
    """A CMS that can also list its posts dated within a span (the sandbox): posts planned outside the
    calendar are shown too."""

    async def posts_dated(self, start: datetime, end: datetime) -> list[PostSummary]: ...


async def month_calendar(
    units: UnitOfWorkFactory, registry: ConnectorRegistry, team: str, month: date, zone: ZoneInfo
) -> MonthCalendar:
    start = place(datetime.combine(month, time()), zone)
    end = place(datetime.combine(months.shift(month, 1), time()), zone)
    async with units() as uow:
        slots = await PlannedSlots(uow.session).between(team, start, end)
        planned = await _planned_digests(uow, slots)
    cms = registry.connector_for("cms.create_draft")
    found: dict[str, PostSummary] = {}
    outside: list[PostSummary] = []
    problem: str | None = None
    try:
        if isinstance(cms, SlugReader) and slots:
            found = {post.slug: post for post in await cms.posts_by_slug([slot.slug for slot in slots])}
        if isinstance(cms, DatedReader):
            outside = [post for post in await cms.posts_dated(start, end) if post.slug not in planned]
    except ConnectorError as exc:
        problem = f"the CMS could not be read just now ({exc}); planned slots only"
    entries = [
        _slot_entry(slot, zone, _slot_status(found.get(slot.slug), planned.get(slot.slug, "")))
        for slot in slots
    ]
    entries += [entry for post in outside if (entry := _post_entry(post, zone)) is not None]
    return MonthCalendar(month, zone, _weeks(month, sorted(entries, key=lambda e: (e.at, e.slug))), problem)


async def _planned_digests(uow: UnitOfWork, slots: Sequence[PlannedSlot]) -> dict[str, str]:
    """Each slot's slug and the digest of the body its draft was created with."""
    digests: dict[str, str] = {}
    for slot in slots:
        proposed = await uow.get(ProposedAction, slot.action_id)
        body = proposed.params.get("body") if proposed is not None else None
        digests[slot.slug] = body_digest(body) if isinstance(body, str) else ""
    return digests


def calendar_message(calendar: MonthCalendar) -> tuple[str, list[dict[str, Any]]]:
    """The calendar as Block Kit (validated by slack_sdk as it is built), and its text fallback."""
    title = f"Content calendar: {calendar.month:%B %Y}"
    counts = _counts(calendar)
    legend = " · ".join(f"{EMOJI[s]} {counts.get(s, 0)} {s}" for s in EMOJI)
    blocks: list[Block] = [
        HeaderBlock(block_id="aios_calendar_header", text=title[:HEADER_MAX]),
        ContextBlock(
            block_id="aios_calendar_legend",
            elements=[MarkdownTextObject(text=f"Times in {calendar.zone.key} · {legend}")],
        ),
    ]
    for number, week in enumerate(calendar.weeks, 1):
        lines = [f"*Week of {_day(week.monday)}*"]
        lines += [
            f"{EMOJI[e.status]} {_day(e.at.date())} {e.at:%H:%M} · {e.status} · “{escape(_short(e.title))}”"
            + (f" · `{format_id('A', e.action)}`" if e.action is not None else "")
            for e in week.entries
        ] or ["_nothing planned_"]
        blocks.append(
            SectionBlock(
                block_id=f"aios_calendar_week_{number}",
                text=MarkdownTextObject(text=truncate("\n".join(lines), SECTION_MAX)),
            )
        )
    if calendar.problem:
        blocks.append(
            ContextBlock(
                block_id="aios_calendar_problem", elements=[MarkdownTextObject(text=escape(calendar.problem))]
            )
        )
    return f"{title} ({calendar.zone.key}): {legend}", [block.to_dict() for block in blocks]


def calendar_table(calendar: MonthCalendar) -> Table:
    """The calendar as a terminal table: one row per post, the week on the first row of its posts."""
    from rich.table import Table

    table = Table(title=f"Content calendar: {calendar.month:%B %Y} ({calendar.zone.key})")
    for column in ("Week of", "Day", "Time", "Status", "Title", "Draft"):
        table.add_column(column)
    for week in calendar.weeks:
        if not week.entries:
            table.add_row(_day(week.monday), "", "", "", "(nothing planned)", "")
        for i, e in enumerate(week.entries):
            table.add_row(
                _day(week.monday) if i == 0 else "",
                _day(e.at.date()),
                f"{e.at:%H:%M}",
                f"{MARKS[e.status]} {e.status}",
                _short(e.title),
                format_id("A", e.action) if e.action is not None else "",
            )
    if calendar.problem:
        table.caption = calendar.problem
    return table


async def calendar_answer(
    units: UnitOfWorkFactory,
    registry: ConnectorRegistry,
    zone: ZoneInfo,
    now: datetime,
    team: str,
    words: str,
) -> tuple[str, list[dict[str, Any]] | None]:
    """What `/aios calendar [month]` answers; bad words get one sentence."""
    try:
        month = read_month(words, now.astimezone(zone).date())
    except UnreadableMonth as exc:
        return str(exc), None
    return calendar_message(await month_calendar(units, registry, team, month, zone))


def _slot_entry(slot: PlannedSlot, zone: ZoneInfo, status: str) -> Entry:
    return Entry(slot.planned_for.astimezone(zone), status, slot.title, slot.slug, slot.angle, slot.action_id)


def _slot_status(post: PostSummary | None, planned_digest: str) -> str:
    """A slot's status from its post: a draft still holding the body it was created with is an empty slot;
    one whose body changed since is written."""
    if post is None:
        return "planned"
    if post.status == "draft":
        written = bool(post.body_digest) and post.body_digest != planned_digest
        return "drafted" if written else "planned"
    return _cms_status(post.status)


def _cms_status(status: str | None) -> str:
    """A slot's status from what a CMS reader says of its post. Past the four the readers share, WordPress has
    its own: a private post is out (to the site's members), one pending review is written, one in the trash
    leaves the slot empty."""
    if status is None or status in ("draft", "unpublished", "trash", "auto-draft"):
        return "planned"
    if status in ("published", "private"):
        return "published"
    return status if status in EMOJI else "drafted"


def _post_entry(post: PostSummary, zone: ZoneInfo) -> Entry | None:
    """A post outside the calendar: when it goes (or went) out, or for a draft when it last changed."""
    if post.status not in ("draft", "scheduled", "published") or not post.date:
        return None
    at = datetime.strptime(post.date, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).astimezone(zone)
    return Entry(at, "drafted" if post.status == "draft" else post.status, post.title, post.slug)


def _weeks(month: date, entries: list[Entry]) -> list[Week]:
    """Monday-to-Sunday weeks with a day in the month, each with its entries."""
    monday = month - timedelta(days=month.weekday())
    following = months.shift(month, 1)
    weeks: list[Week] = []
    while monday < following:
        weeks.append(Week(monday, [e for e in entries if monday <= e.at.date() < monday + timedelta(days=7)]))
        monday += timedelta(days=7)
    return weeks


def _counts(calendar: MonthCalendar) -> dict[str, int]:
    counts: dict[str, int] = {}
    for week in calendar.weeks:
        for entry in week.entries:
            counts[entry.status] = counts.get(entry.status, 0) + 1
    return counts


def _day(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def _short(title: str) -> str:
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"
