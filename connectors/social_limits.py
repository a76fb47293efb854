"""How long a social post may be on each network, measured as that network measures it, and how a text is cut to
fit: at a word boundary, with an ellipsis, and never past the limit.

Mastodon counts characters (code points) with every link as 23, whatever its length; Bluesky counts graphemes
(what a reader sees as one character: an accented letter, a family emoji); the sandbox counts characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

Network = Literal["sandbox", "mastodon", "bluesky"]
NETWORKS: tuple[str, ...] = get_args(Network)
ELLIPSIS = "…"
MASTODON_LINK_LENGTH = 23  # Mastodon counts every http(s) link as this many characters
_LINK = re.compile(r"https?://\S+")
_SPACE = re.compile(r"\s+")


def mastodon_length(text: str) -> int:
    return len(_LINK.sub("x" * MASTODON_LINK_LENGTH, text))


def graphemes(text: str) -> int:
    return len(clusters(text))


def clusters(text: str) -> list[str]:
    """The text's grapheme clusters (Unicode's extended ones, UAX #29)."""
    # Imported here: every `aios` command imports the actions, and most never count a grapheme.
    from wcwidth import iter_graphemes

    return list(iter_graphemes(text))


@dataclass(frozen=True)
class Limit:
    size: int
    unit: str  # what is counted, as people say it
    measure: Callable[[str], int]
    note: str = ""

    def fits(self, text: str) -> bool:
        return self.measure(text) <= self.size

    def describe(self) -> str:
        return f"at most {self.size} {self.unit}{self.note}"


LIMITS: dict[str, Limit] = {
    "sandbox": Limit(500, "characters", len),
    "mastodon": Limit(500, "characters", mastodon_length, " (a link counts as 23)"),
    "bluesky": Limit(300, "graphemes", graphemes),
}


def cut_to_fit(text: str, limit: Limit, *, suffix: str = "") -> str:
    """``text`` (white space collapsed) followed by ``suffix``, within ``limit``: when it is too long, the text is
    cut after its last whole word that leaves room for an ellipsis and the suffix. Only a first word longer than
    all the room there is gets cut inside itself. The suffix is kept whole; if it does not fit even alone, the
    text is cut without it."""
    words = _SPACE.sub(" ", text).strip()
    if limit.fits(words + suffix):
        return words + suffix
    if suffix and not limit.fits(ELLIPSIS + suffix):
        return cut_to_fit(text, limit)
    # Measures are not monotonic over prefixes (half a link is shorter than a whole one on Mastodon), so the
    # boundaries are tried from the longest down rather than by bisection.
    cuts = [m.start() for m in re.finditer(" ", words)]
    for cut in reversed(cuts):
        candidate = words[:cut].rstrip(" ,;:.-–—") + ELLIPSIS + suffix
        if words[:cut].strip() and limit.fits(candidate):
            return candidate
    # Every cluster outside a link counts at least one, so starting from the first ``size`` loses nothing.
    kept = clusters(words)[: limit.size]
    while kept and not limit.fits("".join(kept) + ELLIPSIS + suffix):
        kept.pop()
    return "".join(kept) + ELLIPSIS + suffix
