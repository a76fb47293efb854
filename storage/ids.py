"""Short, human-typeable record ids such as ``D-42``: a prefix naming the kind and the row's integer key."""

from __future__ import annotations

import re

_ID = re.compile(r"^\s*(AP|[IRADEM])-(\d+)\s*$", re.IGNORECASE)


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
