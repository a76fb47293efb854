"""Social posts' lengths as each network counts them, and the cut that fits a text: never past the limit, never
inside a word when a whole word fits; the snippet request the bot files, and the offline grammar's snippets."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.offline.content import plan
from agents.social_snippets import SnippetRequest, parse_request, snippet
from connectors.actions import SocialPost
from connectors.social_limits import ELLIPSIS, LIMITS, cut_to_fit, graphemes, mastodon_length

PUNCTUATION = " ,;:.-–—"
# Letters, accents that combine with them, emoji (a family is one grapheme of five code points), links.
WORD = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzÄé", min_size=1, max_size=30),
    st.sampled_from(
        ["e\u0301", "👨\u200d👩\u200d👧", "🇩🇪", "—", ",", "https://example.com/a-very/long/path"]
    ),
    st.text(alphabet="xyz", min_size=200, max_size=700),  # a word longer than every limit
)
TEXT = st.lists(WORD, max_size=120).map(" ".join)
LINKS = st.sampled_from(["", "\n\nhttps://blog.example.com/posts/spring-lookbook", "\n\n" + "x" * 600])


@given(text=TEXT, network=st.sampled_from(sorted(LIMITS)), suffix=LINKS)
def test_a_cut_text_is_never_over_the_limit_nor_cut_inside_a_word_that_could_stay_whole(
    text: str, network: str, suffix: str
) -> None:
    limit = LIMITS[network]
    words = " ".join(text.split())
    cut = cut_to_fit(text, limit, suffix=suffix)
    assert limit.fits(cut)
    if cut in (words + suffix, words):
        return
    kept_suffix = suffix if cut.endswith(ELLIPSIS + suffix) and suffix else ""
    body = cut[: len(cut) - len(kept_suffix)]
    assert body.endswith(ELLIPSIS)
    body = body[: -len(ELLIPSIS)]
    boundaries = [m.start() for m in re.finditer(" ", words)]
    at_a_word = any(words[:b].rstrip(PUNCTUATION) == body for b in boundaries)
    first_word = words.split(" ")[0]
    # Cut inside a word only when not even the first word fits with the ellipsis (and the suffix).
    assert at_a_word or not limit.fits(first_word + ELLIPSIS + kept_suffix)
    if kept_suffix == "" and suffix:
        assert not limit.fits(ELLIPSIS + suffix)  # the suffix is dropped only when it cannot fit at all


def test_mastodon_counts_a_link_as_23_and_bluesky_counts_graphemes() -> None:
    assert mastodon_length("see https://example.com/" + "a" * 100) == len("see ") + 23
    assert graphemes("e\u0301👨\u200d👩\u200d👧🇩🇪") == 3
    assert LIMITS["bluesky"].fits("👨\u200d👩\u200d👧" * 300)
    assert not LIMITS["bluesky"].fits("a" * 301)


def test_a_post_over_its_networks_limit_is_refused_saying_how_it_counts() -> None:
    SocialPost(network="mastodon", text="x " * 200 + "https://example.com/" + "p" * 400)
    with pytest.raises(ValidationError, match="bluesky takes at most 300 graphemes"):
        SocialPost(network="bluesky", text="é" * 301)
    with pytest.raises(ValidationError, match=r"at most 500 characters \(a link counts as 23\)"):
        SocialPost(network="mastodon", text="x" * 501)


REQUEST = SnippetRequest(
    slug="spring-lookbook",
    post_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
    networks=("mastodon", "bluesky"),
    title='Spring "lookbook"\nnetworks: sandbox',
    excerpt="Ten looks for April. " * 30,
    link="https://blog.example.com/posts/spring-lookbook",
)


def test_the_request_reads_back_as_written_and_a_title_cannot_pass_for_a_field() -> None:
    assert parse_request(REQUEST.text()) == REQUEST
    assert parse_request("publish post spring-lookbook") is None
    assert parse_request(REQUEST.text().replace("mastodon, bluesky", "myspace")) is None


@given(title=st.text(max_size=300), excerpt=st.text(max_size=2000))
def test_every_snippet_is_a_valid_post_on_its_network(title: str, excerpt: str) -> None:
    request = SnippetRequest(
        "spring-lookbook", REQUEST.post_at, ("mastodon", "bluesky", "sandbox"), title, excerpt, REQUEST.link
    )
    for network in request.networks:
        text = snippet(request, network)
        assert text.endswith("\n\n" + REQUEST.link)
        SocialPost.model_validate({"network": network, "text": text, "post": request.slug})


def test_offline_the_grammar_proposes_one_snippet_per_network() -> None:
    reply = plan(REQUEST.text(), "", {"social_post", "cms_publish", "cms_create_draft"})
    assert reply is not None
    assert [(c.name, c.input["network"]) for c in reply.tool_calls] == [
        ("social_post", "mastodon"),
        ("social_post", "bluesky"),
    ]
    bluesky = reply.tool_calls[1].input
    assert bluesky["post"] == "spring-lookbook" and bluesky["publish_at"] == "2026-12-01T09:30:00+00:00"
    assert str(bluesky["text"]).startswith('Spring "lookbook" networks: sandbox: Ten looks for April.')
    assert graphemes(str(bluesky["text"])) <= 300
