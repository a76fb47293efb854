"""Which entity keys a text names, and the `/aios remember` options that set a memory's kind and key."""

from __future__ import annotations

import re
import time
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slash import bus_command, parse_slash
from runtime.messages import Remember
from storage.memory.entities import inferred_key, named_keys, namespace, normalised_key


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("refund order 1001 $250 arrived broken", ["order:1001"]),
        ("Order #1001 is late", ["order:1001"]),
        ("#1001 is late", ["order:1001"]),
        ("order number 1005.", ["order:1005"]),
        ("order no. 1005, please", ["order:1005"]),
        ("order:1003 note", ["order:1003"]),
        ("orders 1001, 1002 and #1003", ["order:1001", "order:1002", "order:1003"]),
        ("to order #1004 again", ["order:1004"]),
        ("<mailto:Ana@Example.com|Ana@Example.com> prefers email", ["customer:ana@example.com"]),
        ("tom@example.com about order 1002", ["order:1002", "customer:tom@example.com"]),
        ("post spring-lookbook is live", ["post:spring-lookbook"]),
        ("publish the spring-lookbook post", ["post:spring-lookbook"]),
        ("slug: winter-care-guide", ["post:winter-care-guide"]),
        ("post:lookbook needs a new photo", ["post:lookbook"]),
        ("refund pi_3QabcEFG12 in full", ["payment:pi_3QabcEFG12"]),
        ("order 1002: customer wants store credit", ["order:1002"]),
    ],
)
def test_explicit_mentions_are_keys(text: str, keys: list[str]) -> None:
    assert named_keys(text) == keys


@pytest.mark.parametrize(
    "text",
    [
        "refund $1001 on 2026-11-26",
        "the total was 1001.50",
        "order 1001.50 dollars",  # an amount after all
        "we should order 500 mugs",
        "please order 1200 boxes",
        "call at 1001:30",
        "&#1001; is an entity",
        "abc#1001",
        "a post about the sale",
        "post 2026-11-26 news",
        "the well-known issue",
        "in 2026 we sold 1001 mugs",
    ],
)
def test_prices_dates_and_verbs_name_nothing(text: str) -> None:
    assert named_keys(text) == []


@given(st.text(max_size=300))
def test_any_text_gives_well_formed_keys_and_never_raises(text: str) -> None:
    for key in named_keys(text):
        assert normalised_key(key) == key and namespace(key) in ("order", "customer", "post", "payment")


@given(st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False), st.dates())
def test_amounts_and_dates_are_never_orders(amount: Decimal, day: date) -> None:
    text = f"refund ${amount} on {day} or {amount} USD, paid {day:%d.%m.%Y} at {day:%Y/%m/%d}"
    assert named_keys(text) == []


@given(st.integers(min_value=100, max_value=999_999_999), st.sampled_from(["order {}", "order #{}", "#{}"]))
def test_every_written_order_is_found(number: int, form: str) -> None:
    assert named_keys(f"about {form.format(number)}, thanks") == [f"order:{number}"]


def test_a_note_is_kept_under_the_one_entity_it_names() -> None:
    assert inferred_key("order 1002: customer wants store credit") == "order:1002"
    assert inferred_key("Ana (ana@example.com) asked about order 1003") is None  # two: no guess
    assert inferred_key("we never ship on Sundays") is None


@pytest.mark.parametrize(
    ("key", "stored"),
    [
        ("order:#1001", "order:1001"),
        ("Order:1001", "order:1001"),
        ("customer:Ana@Example.com", "customer:ana@example.com"),
        ("post:Spring-Lookbook", "post:spring-lookbook"),
        ("payment:pi_3QabcEFG12", "payment:pi_3QabcEFG12"),
        ("supplier:acme", "supplier:acme"),
        ("order:abc", None),
        ("customer:ana", None),
        ("post:not a slug", None),
        ("no-namespace", None),
        ("order:", None),
    ],
)
def test_keys_people_write_are_normalised_or_refused(key: str, stored: str | None) -> None:
    assert normalised_key(key) == stored


def _remember(argument: str) -> Remember:
    command = bus_command(parse_slash(f"remember {argument}"), team="T", user="U", channel="C")
    assert isinstance(command, Remember)
    return command


def test_remember_takes_a_kind_and_a_key_before_the_text() -> None:
    voice = _remember("--kind brand_voice Plain, warm, specific; no hype")
    assert (voice.text, voice.kind, voice.key, voice.problem) == (
        "Plain, warm, specific; no hype",
        "brand_voice",
        None,
        None,
    )
    keyed = _remember("--kind=customer --key customer:Ana@Example.com Ana prefers email")
    assert (keyed.text, keyed.kind, keyed.key) == (
        "Ana prefers email",
        "customer",
        "customer:ana@example.com",
    )
    assert _remember("—kind brand_voice Slack's dash is fine").kind == "brand_voice"
    plain = _remember("Lena's grinder --kind is a gift")
    assert (plain.text, plain.kind, plain.problem) == ("Lena's grinder --kind is a gift", "note", None)
    for dash in ("—", "--", "–"):
        aside = _remember(f"{dash} plain voice")
        assert (aside.text, aside.kind, aside.problem) == (f"{dash} plain voice", "note", None)


@pytest.mark.parametrize(
    ("argument", "problem"),
    [
        ("--kind Brand_Voice plain", r"`Brand_Voice` is not a kind: a kind is one lowercase word"),
        ("--kind " + "a" * 31 + " text", r"is not a kind: .*at most 30 characters"),
        ("--key order-1001 text", r"`order-1001` is not a key: a key is `namespace:value`"),
        ("--ttl 30d text", r"I don't know the option `--ttl`\. Use `/aios remember \[--kind K\]"),
        ("--kind note --kind customer text", r"`--kind` is given twice"),
        ("--kind", r"`--kind` needs a value"),
        ("--kind brand_voice", r"There is nothing to remember"),
    ],
)
def test_remember_says_what_is_wrong_with_its_options(argument: str, problem: str) -> None:
    said = _remember(argument).problem
    assert said is not None and re.search(problem, said), said


@given(st.text(max_size=200))
def test_any_remember_argument_is_a_note_or_one_clear_problem(argument: str) -> None:
    command = bus_command(parse_slash(f"remember {argument}"), team="T", user="U", channel="C")
    if command is None:
        assert not argument.strip()  # `/aios remember` alone is answered with the help
        return
    assert isinstance(command, Remember)
    if command.problem is None:
        assert command.text.strip() and re.fullmatch(r"[a-z][a-z0-9_]{0,29}", command.kind)
        assert command.key is None or normalised_key(command.key) == command.key


@pytest.mark.parametrize("text", ["a-" * 20_000, "x@" * 20_000, "a'" * 20_000, "order 1001, " * 3_000])
def test_a_long_message_is_read_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    named_keys(text)
    assert time.perf_counter() - started < 3  # about 0.1 s; unbounded patterns took 40 s on the first
