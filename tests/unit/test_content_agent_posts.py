"""Which posts the content agent looks up for a request: the slugs it names, and the topic it searches for."""

from __future__ import annotations

import pytest

from agents.content import MAX_SLUGS, named_slugs, topic


@pytest.mark.parametrize(
    ("texts", "slugs"),
    [
        (['update post spring-lookbook title "Spring lookbook 2027"'], ["spring-lookbook"]),
        (["publish post lookbook", "the slug is Winter"], ["lookbook", "winter"]),
        (["draft a post about linen", "what about spring-lookbook?"], ["spring-lookbook"]),
        (["schedule post summer-lookbook for 2026-12-01T09:00:00Z"], ["summer-lookbook"]),
        (
            ["compare spring-lookbook and summer-lookbook", "and spring-lookbook"],
            ["spring-lookbook", "summer-lookbook"],
        ),
        ([" ".join(f"post-{n}" for n in range(10))], [f"post-{n}" for n in range(MAX_SLUGS)]),
    ],
    ids=["named", "after-a-verb-or-slug", "earlier-message", "not-dates", "once-each", "at-most-five"],
)
def test_the_slugs_a_request_names(texts: list[str], slugs: list[str]) -> None:
    assert named_slugs(texts) == slugs


@pytest.mark.parametrize(
    ("text", "searched"),
    [
        ('draft a post titled "Spring lookbook"', "Spring lookbook"),
        ("write a post about the summer lookbook, with photos", "the summer lookbook"),
        (
            "write a post about how we dye linen with clay and iron, step by step",
            "how we dye linen with clay",
        ),
        ("publish post spring-lookbook", None),
    ],
)
def test_the_topic_a_request_is_about(text: str, searched: str | None) -> None:
    assert topic(text) == searched
