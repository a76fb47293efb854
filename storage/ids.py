"""Short, human-typeable record ids such as ``D-42``: a prefix naming the kind and the row's integer key."""

from __future__ import annotations

import re

_ID = re.compile(r"^\s*(AP|[IRADEM])-(\d+)\s*$", re.IGNORECASE)
# The widest integer key a table has (int4 on PostgreSQL); a larger id names no record, and handing it to
# a query would overflow the driver rather than find nothing.
MAX_KEY = 2**31 - 1


class UnknownIdError(ValueError):
    """The text is not an id of the form ``D-42``."""


def format_id(prefix: str, key: int | None) -> str:
    if key is None:
        raise ValueError(f"record with prefix {prefix} has no key yet")
    return f"{prefix}-{key}"


def parse_id(text: str) -> tuple[str, int]:
    """``"d-42"`` → ``("D", 42)``; anything else raises :class:`UnknownIdError`."""
    match = _ID.match(text)
    if match is None:
        raise UnknownIdError(
            f"{text!r} is not a record id; ids look like R-17 (run), A-3 (action), D-42 (decision), "
            "AP-5 (approval), E-9 (execution) or M-4 (memory)"
        )
    return match.group(1).upper(), int(match.group(2))


def parse_key(text: str, prefix: str) -> int | None:
    """The key of ``text`` when it is an id of the kind ``prefix`` that a table could hold, else None."""
    match = _ID.match(text)
    if match is None or match.group(1).upper() != prefix.upper():
        return None
    key = int(match.group(2))
    return key if key <= MAX_KEY else None


def is_id_of(text: str, prefix: str) -> bool:
    """Whether ``text`` is shaped like an id of the kind ``prefix``, whatever its key: ``R-99999999999`` is
    a run id no table holds (there is no such run), ``X-3`` or ``order 3`` is not a run id at all."""
    match = _ID.match(text)
    return match is not None and match.group(1).upper() == prefix.upper()
