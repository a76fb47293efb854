"""The offline grammar for posts: edits of a WordPress post, only when WordPress offers them."""

from __future__ import annotations

import pytest

from agents.llm import LLMReply
from agents.offline import content

WITH_UPDATES = {"cms_create_draft", "cms_publish", "wordpress_update"}
SANDBOX = {"cms_create_draft", "cms_publish"}


def calls(reply: LLMReply | None) -> list[tuple[str, dict[str, object]]]:
    assert reply is not None
    return [(call.name, call.input) for call in reply.tool_calls]


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        (
            'update post spring-lookbook title "Spring lookbook 2027"',
            {"title": "Spring lookbook 2027"},
        ),
        (
            'update spring-lookbook body "<p>Linen, clay and light.</p>"',
            {"body": "<p>Linen, clay and light.</p>"},
        ),
        ("Update the post Spring-Lookbook excerpt “Linen for spring”", {"excerpt": "Linen for spring"}),
        (
            'update post spring-lookbook title "Spring" body "We publish the draft of "May" today" excerpt ""',
            {"title": "Spring", "body": 'We publish the draft of "May" today', "excerpt": ""},
        ),
    ],
    ids=["title", "body", "excerpt-curly-quotes", "several-with-quotes-inside"],
)
def test_an_update_names_the_slug_and_each_field_to_change(text: str, changes: dict[str, str]) -> None:
    assert calls(content.plan(text, "", WITH_UPDATES)) == [
        ("wordpress_update", {"slug": "spring-lookbook", **changes})
    ]


@pytest.mark.parametrize(
    "text",
    [
        "update post spring-lookbook title Spring lookbook 2027",
        'update post spring-lookbook title "New" please',
    ],
)
def test_an_update_written_otherwise_proposes_nothing_and_says_how_to_write_it(text: str) -> None:
    reply = content.plan(text, "", WITH_UPDATES)
    assert reply is not None and reply.tool_calls == []
    assert 'update post spring-lookbook title "New title"' in reply.text


def test_without_wordpress_an_update_is_not_understood_and_not_offered_in_the_help() -> None:
    assert content.plan('update post spring-lookbook title "Spring lookbook 2027"', "", SANDBOX) is None
    assert not any("update post" in example for example in content.examples(SANDBOX))
    assert any("update post spring-lookbook" in example for example in content.examples(WITH_UPDATES))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'draft a post titled "An update on the spring collection"',
            ("cms_create_draft", {"title": "An update on the spring collection"}),
        ),
        ("publish post spring-lookbook", ("cms_publish", {"slug": "spring-lookbook"})),
    ],
)
def test_drafts_and_publishing_that_mention_updates_are_still_drafts_and_publishing(
    text: str, expected: tuple[str, dict[str, object]]
) -> None:
    assert calls(content.plan(text, "", WITH_UPDATES)) == [expected]
