"""Text as every supported database keeps it.

PostgreSQL refuses a NUL character in text, and any string that is not valid Unicode (a lone surrogate, which
JSON's ``\\ud800`` escape yields) cannot even be encoded for it. SQLite would keep both, but a record must read
the same on either database, so neither is written to any.
"""

from __future__ import annotations


def unkept_in(text: str) -> str | None:
    """What in the text no database keeps, named for an error message; None when all of it is kept."""
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (not valid Unicode)"
    return None


def storable(text: str) -> str:
    """The text with what no database keeps taken out: NUL characters dropped, a lone surrogate replaced by
    U+FFFD (a surrogate pair becomes the character it encodes)."""
    if unkept_in(text) is None:
        return text
    without_nul = text.replace("\x00", "")
    return without_nul.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
