"""Exact keys in the product: `/aios recall` and an agent's "memories used" about one order never bring another
order's memories, and `/aios remember` keeps a note under the kind and key given, or the one entity it names."""

from __future__ import annotations

import io

from rich.console import Console

from bot.bootstrap import Aios
from bot.console import ConsoleSession, ConsoleTransport
from bot.queries import why
from bot.terminal import CONSOLE_TEAM
from runtime.messages import Recall
from storage.records import Run
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, REQUESTER, ask

TEAM = "T0FAKE"
THREAD = "1700000000.000100"


def whispers(slack_api: FakeSlackApi) -> list[str]:
    return [str(c.params["text"]) for c in slack_api.calls_to("chat.postEphemeral")]


async def ask_in_thread(aios: Aios, slack_api: FakeSlackApi, text: str, ts: str) -> None:
    """A mention in THREAD, kept in the thread as Slack keeps people's messages (conversations.replies)."""
    slack_api.add_human_message(CHANNEL, THREAD, ts, REQUESTER, text)
    await ask(aios, text, thread_ts=THREAD, message_ts=ts)


async def memories_used(aios: Aios, run_id: int) -> list[int]:
    async with aios.units() as uow:
        run = await uow.get(Run, run_id)
    assert run is not None
    return run.memories_used


async def test_recall_about_an_order_finds_that_order_and_notes_but_never_another_order(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund $20 on order 1002, torn", thread_ts="1.1")
    await ask(aios, "refund $30 on order 1001, chipped", thread_ts="1.2")
    note, _ = await aios.memory.remember(TEAM, "every order ships in recycled boxes")
    [ours] = await aios.memory.lookup(TEAM, "order:1001")
    [theirs] = await aios.memory.lookup(TEAM, "order:1002")

    await aios.process(Recall(TEAM, REQUESTER, CHANNEL, "order 1001"))
    [reply] = whispers(slack_api)
    assert reply.index(f"`M-{ours.id}` (decision, `order:1001`") < reply.index(f"`M-{note}` (note,")
    assert f"`M-{theirs.id}`" not in reply and "order 1002" not in reply


async def test_why_for_a_refund_lists_no_memory_of_the_threads_other_order(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask_in_thread(aios, slack_api, "refund $20 on order 1002, torn", THREAD)
    [theirs] = await aios.memory.lookup(TEAM, "order:1002")
    await aios.memory.remember(TEAM, "Maya prefers email", kind="customer", key="customer:maya@example.com")
    await ask(aios, "refund $15 on order 1001, the handle broke", thread_ts="1.5")
    [ours] = await aios.memory.lookup(TEAM, "order:1001")

    # In the thread about 1002 (its request and the bot's "Done … order 1002" are the model's history), and with
    # an amount that is also an order number.
    await ask_in_thread(
        aios, slack_api, "refund $10 on order 1001, and $1002 was never charged", "1900000000.000100"
    )

    used = await memories_used(aios, 3)
    assert ours.id in used and theirs.id not in used
    explanation = await why(aios.units, "R-3")
    assert f"`M-{ours.id}` (decision, key `order:1001`)" in explanation
    assert "(customer, key `customer:maya@example.com`) Maya prefers email" in explanation
    assert f"`M-{theirs.id}`" not in explanation


async def test_a_follow_up_naming_no_order_is_given_the_threads_order(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask_in_thread(aios, slack_api, "refund $20 on order 1002, torn", THREAD)
    [earlier] = await aios.memory.lookup(TEAM, "order:1002")
    await ask_in_thread(aios, slack_api, "refund another $5 for the postage", "1900000000.000100")
    assert earlier.id in await memories_used(aios, 2)


async def test_remember_with_a_kind_a_key_or_neither_in_the_console(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    session = ConsoleSession(aios, ConsoleTransport(Console(file=io.StringIO())))
    await session.slash(REQUESTER, "remember --kind brand_voice Plain, warm, specific; no hype")
    await session.slash(REQUESTER, "remember order 1002: customer wants store credit")
    await session.slash(REQUESTER, "remember --key customer:Tom@Example.com Tom prefers calls")
    await session.slash(REQUESTER, "remember Ana (ana@example.com) asked about order 1003")
    await session.slash(REQUESTER, "remember --kind Brand Voice loud")
    await session.slash(REQUESTER, "remember --ttl 30d short-lived")

    said = whispers(slack_api)
    assert said[:4] == [
        "Remembered as `M-1` (kind `brand_voice`).",
        "Remembered as `M-2` (key `order:1002`).",
        "Remembered as `M-3` (key `customer:tom@example.com`).",
        "Remembered as `M-4`.",  # two entities: no key is guessed
    ]
    assert said[4].startswith("`Brand` is not a kind: a kind is one lowercase word")
    assert said[5].startswith("I don't know the option `--ttl`.")
    stored = {m["text"]: (m["kind"], m["key"]) for m in await aios.memory.export(CONSOLE_TEAM)}
    assert stored == {
        "Plain, warm, specific; no hype": ("brand_voice", None),
        "order 1002: customer wants store credit": ("note", "order:1002"),
        "Tom prefers calls": ("note", "customer:tom@example.com"),
        "Ana (ana@example.com) asked about order 1003": ("note", None),
    }
    assert [h.text for h in await aios.memory.lookup(CONSOLE_TEAM, "order:1002")] == [
        "order 1002: customer wants store credit"
    ]
