from __future__ import annotations

import pytest

from bot.settings import MissingSettingError, Settings
from bot.slash import parse_slash
from storage.engine import DatabaseUrlError, normalise_database_url
from storage.ids import MAX_KEY, UnknownIdError, format_id, is_id_of, parse_id, parse_key


@pytest.mark.parametrize(
    ("text", "name", "argument"),
    [
        ("", "help", ""),
        ("help", "help", ""),
        ("why D-42", "why", "D-42"),
        ("WHY  ap-3 ", "why", "ap-3"),
        ("status", "status", ""),
        ("refund order 1001 $250", "intent", "refund order 1001 $250"),
        ("whyever not", "intent", "whyever not"),
    ],
)
def test_slash_grammar(text: str, name: str, argument: str) -> None:
    command = parse_slash(text)
    assert (command.name, command.argument) == (name, argument)


def test_ids_round_trip() -> None:
    assert parse_id("d-42") == ("D", 42)
    assert parse_id(" AP-7 ") == ("AP", 7)
    assert format_id("R", 17) == "R-17"
    for bad in ("42", "X-1", "D-", "D-1x"):
        with pytest.raises(UnknownIdError, match="ids look like"):
            parse_id(bad)


@pytest.mark.parametrize(
    ("text", "prefix", "key"),
    [
        ("R-17", "R", 17),
        (" r-17 ", "R", 17),
        ("ap-3", "AP", 3),
        (f"A-{MAX_KEY}", "A", MAX_KEY),
        (f"A-{MAX_KEY + 1}", "A", None),  # no table holds it: a query would overflow the driver
        ("R-99999999999", "R", None),
        ("A-3", "R", None),
        ("AP-3", "A", None),
        ("order 3", "R", None),
    ],
)
def test_a_key_is_parsed_only_for_its_kind_and_only_when_a_table_could_hold_it(
    text: str, prefix: str, key: int | None
) -> None:
    assert parse_key(text, prefix) == key


def test_an_id_too_big_for_a_table_is_still_an_id_of_its_kind() -> None:
    assert is_id_of("R-99999999999", "R") and not is_id_of("A-1", "R") and not is_id_of("R-x", "R")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db.example:5432/app", "postgresql+asyncpg://u:p@db.example:5432/app"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite+aiosqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
    ],
)
def test_database_urls(url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected


def test_unsupported_database_url_says_what_to_use() -> None:
    with pytest.raises(DatabaseUrlError, match="postgresql\\+asyncpg"):
        normalise_database_url("mysql://root@localhost/test")


def test_missing_settings_are_named_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    settings = Settings(_env_file=None)
    with pytest.raises(MissingSettingError, match="SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET are not set"):
        settings.require("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
