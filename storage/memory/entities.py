"""Which entities a text names, written as the keys memories are stored under: ``order:1003``,
``customer:ana@example.com``, ``post:spring-lookbook``, ``payment:pi_3Q…``.

Deliberately strict: a key found here decides which memories a search returns first and which it leaves out,
so only explicit mentions count — "order 1001", "order #1001", "#1001", an e-mail address, "post
spring-lookbook", a Stripe payment id. A bare number (an amount, "$1001", a year, a date) names nothing.
"""

from __future__ import annotations

import re

NAMESPACES = ("order", "customer", "post", "payment")
KEY_MAX = 200

# Slack writes an e-mail address as <mailto:a@b.com|a@b.com>; the address itself is what is meant.
_MAILTO = re.compile(r"<mailto:([^|>]+)(?:\|[^>]*)?>")
# A number ends the mention: "1001.50", "1001-05" or "1001:30" are something else (an amount, a date, a time).
_NUMBER = r"(\d{3,9})\b(?![.,:/-]\d)"
_ORDER = re.compile(
    r"(?:\b([\w']{1,12})\s+)?\borders?\b\s*(?::|\b(?:no|nr|number)\b\.?)?\s*(#?)\s*"
    + _NUMBER
    + r"((?:\s*(?:,|&|\band\b|\bor\b)\s*#?\s*\d{3,9}\b(?![.,:/-]\d))*)",
    re.IGNORECASE,
)
_LISTED = re.compile(r"\d{3,9}")
# "order" is a verb too: "we should order 500 mugs" names no order (with a "#" it does: "to order #1001").
_VERB_BEFORE = frozenset(
    {"to", "will", "would", "should", "must", "can", "could", "shall", "may", "might", "please", "also"}
    | {"then", "we", "i", "you", "they", "let's", "lets"}
)
_HASH_NUMBER = re.compile(r"(?<![\w&#])#" + _NUMBER)
# Every repetition is bounded: a long run of letters and hyphens must cost linear time, not quadratic.
_ADDRESS = r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}"
_EMAIL = re.compile(rf"\b{_ADDRESS}\b")
_SLUG = r"([a-z0-9]{1,40}(?:-[a-z0-9]{1,40}){1,12})"  # hyphenated: a single word after "post" is too often just a word
_POST = re.compile(
    r"\b(?:post|slug)\b(?:\s*:\s*|\s+)[`'\"“]?(?:post:)?([a-z0-9]{1,40}(?:-[a-z0-9]{1,40}){0,12})\b(?!-)"
    + r"|\b"
    + _SLUG
    + r"[`'\"”]?\s+post\b",
    re.IGNORECASE,
)
_POST_KEY = re.compile(
    r"\bpost:([a-z0-9]{1,40}(?:-[a-z0-9]{1,40}){0,12})\b(?!-)", re.IGNORECASE
)  # a key written out
_DATE = re.compile(r"^\d{2,4}-\d{1,2}(?:-\d{1,4})?$")
_PAYMENT = re.compile(r"\b(?:pi|ch|py)_[A-Za-z0-9]{1,250}\b")
_KEY = re.compile(r"^([a-z][a-z0-9_]{0,29}):(\S+)$")
_VALUES = {
    "order": re.compile(r"#?(\d{1,9})"),
    "customer": re.compile(_ADDRESS),
    "post": re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.IGNORECASE),
    "payment": re.compile(r"(?:pi|ch|py)_[A-Za-z0-9]{1,250}"),
}


def named_keys(text: str) -> list[str]:
    """The keys of the entities ``text`` names, each once: orders, customers, posts, then payments."""
    plain = _MAILTO.sub(r" \1 ", text)
    keys = [f"order:{int(n)}" for n in _orders(plain)]
    keys += [f"customer:{m.group().lower()}" for m in _EMAIL.finditer(plain)]
    keys += [f"post:{slug}" for slug in _posts(plain)]
    keys += [f"payment:{m.group()}" for m in _PAYMENT.finditer(plain)]
    return list(dict.fromkeys(keys))


def inferred_key(text: str) -> str | None:
    """The key a note is kept under when none is given: the entity it names, when it names exactly one."""
    keys = named_keys(text)
    return keys[0] if len(keys) == 1 else None


def namespace(key: str) -> str | None:
    """``order`` for ``order:1001``; None for a key without one."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def normalised_key(key: str) -> str | None:
    """A key as a person wrote it (``order:#1001``, ``customer:Ana@Example.com``) as memories store it; None
    when it is not ``namespace:value`` or its value is not one of that namespace (an order number, an e-mail
    address, a post's slug, a Stripe payment id). Other namespaces are free: ``supplier:acme`` is a key."""
    head, colon, tail = key.strip().partition(":")
    match = _KEY.match(head.lower() + colon + tail)
    if match is None or len(key.strip()) > KEY_MAX:
        return None
    space, value = match.groups()
    pattern = _VALUES.get(space)
    if pattern is None:
        return f"{space}:{value}"
    valid = pattern.fullmatch(value)
    if valid is None:
        return None
    if space == "order":
        return f"order:{int(valid.group(1))}"
    return f"{space}:{value if space == 'payment' else value.lower()}"


def _orders(text: str) -> list[str]:
    numbers: list[str] = []
    for match in _ORDER.finditer(text):
        before, hashed, first, listed = match.groups()
        if before is not None and before.lower() in _VERB_BEFORE and not hashed:
            continue
        numbers += [first, *_LISTED.findall(listed)]
    numbers += [m.group(1) for m in _HASH_NUMBER.finditer(text)]
    return numbers


def _posts(text: str) -> list[str]:
    slugs = [(m.group(1) or m.group(2)).lower() for m in _POST.finditer(text)]
    named = [slug for slug in slugs if "-" in slug and not _DATE.match(slug)]
    return named + [m.group(1).lower() for m in _POST_KEY.finditer(text)]
