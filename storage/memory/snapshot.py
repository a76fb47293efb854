"""Memory snapshots: a team's memories as JSON Lines, as `aios memory export` writes and `aios memory import` reads.

The first line is a header naming the format, its version, the team and when it was exported; every further line
is one memory, the record ``MemoryStore.export`` returns for it. The README's memory section describes each
field. Reading checks the whole file before anything is written, and names the line of any problem.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from storage.memory.base import MemoryStore, MemoryStoreError, content_hash
from storage.memory.entities import normalised_key
from storage.records import Memory
from storage.text import unkept_in

FORMAT = "aios-memory-snapshot"
VERSION = 1
MAX_USE_COUNT = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL

# The column widths, so that a value too long is refused with its line rather than by the database.
_WIDTHS: dict[str, int] = {
    name: Memory.__table__.c[name].type.length  # type: ignore[attr-defined]
    for name in ("kind", "key", "vector_model")
}


class SnapshotError(MemoryStoreError):
    """A memory record the importer refuses; ``number`` is its position among the records (1 for the first)."""

    def __init__(self, number: int, problem: str) -> None:
        super().__init__(f"record {number}: {problem}")
        self.number = number
        self.problem = problem


def exported(memory: Memory) -> dict[str, Any]:
    """One memory as a snapshot line holds it: its team and ``EXPORT_FIELDS``."""
    return {
        "team": memory.team_id,
        "text": memory.text,
        "kind": memory.kind,
        "key": memory.key,
        "meta": memory.meta,
        "created_at": memory.created_at.isoformat(),
        "last_used_at": _iso(memory.last_used_at),
        "use_count": memory.use_count,
        "expires_at": _iso(memory.expires_at),
        # The stored bytes as they are: float32 in the machine's order, little-endian on every platform the bot
        # runs on (x86-64, ARM64).
        "vector": base64.b64encode(memory.vector).decode("ascii") if memory.vector else None,
        "vector_model": memory.vector_model if memory.vector else None,
    }


def memory_row(number: int, record: object, team: str, now: datetime) -> dict[str, Any]:
    """The memory table's values for one exported record, checked; raises SnapshotError naming what is wrong.
    Fields other than ``text`` may be left out (see the README); fields this version does not know are ignored."""
    if not isinstance(record, dict):
        raise SnapshotError(number, f"a memory must be a JSON object, not {_json_type(record)}")
    if "format" in record:
        raise SnapshotError(number, "a second snapshot header: a file holds one snapshot")
    named = record.get("team")
    if named is not None and named != team:
        raise SnapshotError(
            number,
            f"the memory belongs to team {named!r}, not {team!r}; nothing was imported "
            "(memories never move between teams)",
        )
    text_ = record.get("text")
    if not isinstance(text_, str) or not text_.strip():
        raise SnapshotError(number, "the memory has no text")
    unkept = unkept_in(text_)
    if unkept is not None:
        raise SnapshotError(number, f"the text holds {unkept}, which no database keeps")
    vector, vector_model = _vector(number, record)
    return {
        "team_id": team,
        "kind": _string(number, record, "kind", "note", empty=False),
        "key": _key(number, record),
        "text": text_.strip(),
        "content_hash": content_hash(text_),
        "meta": _meta(number, record),
        "created_at": _timestamp(number, record, "created_at") or now,
        "expires_at": _timestamp(number, record, "expires_at"),
        "last_used_at": _timestamp(number, record, "last_used_at"),
        "use_count": _use_count(number, record),
        "vector": vector,
        "vector_model": vector_model,
    }


def snapshot_lines(team: str, memories: Sequence[dict[str, Any]], exported_at: datetime) -> Iterator[str]:
    """The snapshot of ``team``: its header, then one line per exported memory (without newlines)."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "team": team,
        "exported_at": exported_at.isoformat(),
        "memories": len(memories),
    }
    yield json.dumps(header, sort_keys=True)
    for memory in memories:
        yield json.dumps(memory, sort_keys=True)


def lines_of(snapshot: str) -> list[str]:
    """A snapshot's lines: split at line feeds only, since JSON strings may hold U+2028 and the other breaks
    str.splitlines() also splits at; a carriage return ending a line (a file written on Windows) and a
    byte-order mark before the header (some editors write one) are not part of the JSON."""
    return [line.removesuffix("\r") for line in snapshot.removeprefix("\ufeff").split("\n")]


async def import_snapshot(store: MemoryStore, team: str, lines: Iterable[str]) -> int:
    """Import a snapshot's lines into ``team``; returns how many memories are new. The header and every memory
    are checked before anything is written, and a problem is one MemoryStoreError naming its line."""
    header: dict[str, Any] | None = None
    records: list[Any] = []
    numbers: list[int] = []  # the line of each record
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_not_a_number)
        except json.JSONDecodeError as exc:
            raise MemoryStoreError(f"line {number} is not JSON: {exc.msg} (column {exc.colno})") from None
        except ValueError as exc:
            raise MemoryStoreError(f"line {number} is not JSON: {exc}") from None
        if header is None:
            header = _checked_header(number, value, team)
        else:
            records.append(value)
            numbers.append(number)
    if header is None:
        raise MemoryStoreError("the snapshot is empty: a snapshot starts with its header line")
    promised = header.get("memories")
    if promised is not None and promised != len(records):
        raise MemoryStoreError(
            f"the header promises {promised} memories but the file holds {len(records)}: it is incomplete "
            "or was edited; nothing was imported"
        )
    try:
        return await store.import_records(team, records)
    except SnapshotError as exc:
        raise MemoryStoreError(f"line {numbers[exc.number - 1]}: {exc.problem}") from None


def _checked_header(number: int, value: object, team: str) -> dict[str, Any]:
    where = f"line {number}"
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise MemoryStoreError(
            f'{where}: not a memory snapshot; its first line must be the header {{"format": "{FORMAT}", '
            f'"version": {VERSION}, "team": …}} (as `aios memory export` writes)'
        )
    version = value.get("version")
    if version != VERSION:
        raise MemoryStoreError(
            f"{where}: snapshot version {version!r} is not one this version of aios reads (it reads "
            f"version {VERSION}); nothing was imported"
        )
    named = value.get("team")
    if not isinstance(named, str) or not named:
        raise MemoryStoreError(f"{where}: the header names no team")
    if named != team:
        raise MemoryStoreError(
            f"{where}: this is a snapshot of team {named!r}, not {team!r}; nothing was imported "
            "(memories never move between teams)"
        )
    promised = value.get("memories")
    if promised is not None and (not isinstance(promised, int) or isinstance(promised, bool) or promised < 0):
        raise MemoryStoreError(f"{where}: 'memories' must be a count, not {promised!r}")
    return value


def _string(number: int, record: dict[str, Any], field: str, default: str | None, *, empty: bool) -> Any:
    value = record.get(field, default)
    if value is None and default is None:
        return None
    if not isinstance(value, str) or (not empty and not value) or unkept_in(value) is not None:
        kind = "a string" if empty else "a non-empty string"
        raise SnapshotError(number, f"{field} must be {kind} of text every database keeps, not {value!r}")
    if len(value) > _WIDTHS[field]:
        raise SnapshotError(number, f"{field} is longer than {_WIDTHS[field]} characters")
    return value


def _key(number: int, record: dict[str, Any]) -> str | None:
    """The key as `aios memory remember --key` would store it (``Order:#1001`` is ``order:1001``)."""
    written = _string(number, record, "key", None, empty=True)
    if written is None:
        return None
    key = normalised_key(written)
    if key is None:
        raise SnapshotError(
            number,
            f"key {written!r} is not a key: a key is namespace:value, e.g. order:1003, "
            "customer:ana@example.com or post:spring-lookbook",
        )
    return key


def _meta(number: int, record: dict[str, Any]) -> dict[str, Any]:
    meta = record.get("meta")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise SnapshotError(number, f"meta must be a JSON object, not {_json_type(meta)}")
    return meta


def _timestamp(number: int, record: dict[str, Any], field: str) -> datetime | None:
    value = record.get(field)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise SnapshotError(
            number,
            f"{field} {value!r} is not a timestamp with a time zone (ISO 8601, e.g. 2026-03-01T09:30:00+00:00)",
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is a moment before year 1 in UTC
        raise SnapshotError(number, f"{field} {value!r} is out of range in UTC (years 1 to 9999)") from None


def _use_count(number: int, record: dict[str, Any]) -> int:
    value = record.get("use_count", 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_USE_COUNT:
        raise SnapshotError(number, f"use_count must be a whole number from 0, not {value!r}")
    return value


def _vector(number: int, record: dict[str, Any]) -> tuple[bytes | None, str | None]:
    encoded, model = record.get("vector"), record.get("vector_model")
    if encoded is None:
        return None, None
    if model is None:
        raise SnapshotError(number, "a vector needs its vector_model (the model that made it)")
    model = _string(number, record, "vector_model", None, empty=False)
    try:
        vector = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
    except binascii.Error:
        vector = b""
    if not vector or len(vector) % 4:
        raise SnapshotError(number, "vector must be base64 of float32 values (little-endian)")
    return vector, model


def _not_a_number(constant: str) -> float:
    # Python's json reads NaN and Infinity, which JSON has not: PostgreSQL would refuse them in meta.
    raise ValueError(f"{constant} is not a JSON number")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _json_type(value: object) -> str:
    return {list: "a list", str: "a string", bool: "true or false", type(None): "null"}.get(
        type(value), "a number"
    )
