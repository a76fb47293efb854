"""The social settings: which networks, how long after a post, its address; what is wrong stops the start."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from bot.settings import Settings


def settings(**values: str) -> Settings:
    return Settings.model_validate(values)


def test_no_networks_no_snippets_and_networks_with_an_address_give_them() -> None:
    assert settings().social() is None
    social = settings(
        AIOS_SOCIAL_NETWORKS=" Mastodon, sandbox", AIOS_SOCIAL_POST_URL="https://b.example/{slug}"
    )
    found = social.social()
    assert found is not None
    assert (found.networks, found.delay, found.link("spring-lookbook")) == (
        ("mastodon", "sandbox"),
        timedelta(minutes=30),
        "https://b.example/spring-lookbook",
    )
    wordpress = settings(AIOS_SOCIAL_NETWORKS="sandbox", WORDPRESS_URL="https://blog.example.com/")
    found = wordpress.social()
    assert found is not None and found.link("a-b") == "https://blog.example.com/?name=a-b"


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"AIOS_SOCIAL_NETWORKS": "mastodon,myspace"}, "names 'myspace'; the networks are sandbox, mastodon"),
        ({"AIOS_SOCIAL_NETWORKS": "sandbox,sandbox"}, "names a network twice"),
        ({"AIOS_SOCIAL_NETWORKS": "sandbox"}, "needs AIOS_SOCIAL_POST_URL too"),
        (
            {"AIOS_SOCIAL_NETWORKS": "mastodon,bluesky", "AIOS_SOCIAL_POST_URL": "https://b.example/{slug}"},
            "names bluesky, which the bot cannot post to yet (no connector); the networks it posts to are "
            "sandbox, mastodon",
        ),
        ({"AIOS_SOCIAL_POST_URL": "blog.example.com/{slug}"}, "must be an http(s) address with {slug}"),
        (
            {
                "AIOS_SOCIAL_NETWORKS": "mastodon,sandbox",
                "AIOS_SOCIAL_POST_URL": "https://b.example/{slug}",
                "MASTODON_URL": "https://mastodon.example",
            },
            "names sandbox, but with MASTODON_URL set social posts go to Mastodon",
        ),
        ({"AIOS_SOCIAL_DELAY_MINUTES": "-5"}, "greater than or equal to 0"),
    ],
)
def test_a_wrong_social_setting_is_named(values: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError, match=r"(?s).*" + says.replace("(", r"\(").replace(")", r"\)")):
        settings(**values)


def test_the_mastodon_token_is_a_secret() -> None:
    found = settings(MASTODON_URL="https://m.example", MASTODON_ACCESS_TOKEN="tok-123456")
    assert ("MASTODON_ACCESS_TOKEN", "tok-123456") in [(s.setting, s.value) for s in found.secrets()]
    assert "tok-123456" not in repr(found)
    assert found.connector_settings()["MASTODON_ACCESS_TOKEN"] == "tok-123456"
