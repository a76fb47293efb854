"""Memory across threads: outcomes are remembered, later threads see them, people can remember and forget."""

from __future__ import annotations

from pathlib import Path

from bot.bootstrap import Aios
from bot.queries import why
from runtime.messages import Forget, Recall, Remember
from storage.memory import EmbeddedMemoryStore
from tests.conftest import Clock
from tests.fakes.anthropic_api import FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, ask, start_aios

TEAM = "T0FAKE"


async def test_a_new_thread_about_an_order_sees_the_earlier_refund(aios: Aios) -> None:
    await ask(aios, "refund $20 on order 1003, the lid cracked", thread_ts="1700000500.000100")
    [memory] = await aios.memory.lookup(TEAM, "order:1003")
    assert "refunded $20.00 on order 1003" in memory.text and memory.kind == "decision"
    assert 'Reason given by the requester/model (unverified): "lid cracked"' in memory.text

    await ask(aios, "refund $10 on order 1003, late again", thread_ts="1700000600.000100")
    explanation = await why(aios.units, "R-2")
    assert "Memories used" in explanation and f"`M-{memory.id}`" in explanation


async def test_claude_is_given_the_customers_history_and_the_brand_voice(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    await claude_aios.memory.remember(
        TEAM,
        "Ana asked for a refund on her blender last month",
        kind="customer",
        key="customer:ana@example.com",
    )
    await claude_aios.memory.remember(
        TEAM, "Brand voice: plain, warm, specific; never say 'amazing'", kind="brand_voice"
    )
    anthropic_api.script(
        Reply("Refund it.", (ToolUse("shop_refund", {"order_id": 1003, "amount": 10.0, "reason": "late"}),)),
        Reply("A draft.", (ToolUse("cms_create_draft", {"title": "Winter care guide"}),)),
    )
    await ask(claude_aios, "refund $10 on order 1003, late", thread_ts="1.1")
    await ask(claude_aios, 'draft a post titled "Winter care guide"', thread_ts="1.2")

    returns_prompt = anthropic_api.requests[0]["system"][0]["text"]
    content_prompt = anthropic_api.requests[1]["system"][0]["text"]
    assert "Ana asked for a refund on her blender last month" in returns_prompt
    assert "never say 'amazing'" in content_prompt and "blender" not in content_prompt


async def test_remember_recall_and_forget_in_slack(aios: Aios, slack_api: FakeSlackApi) -> None:
    await aios.process(Remember(TEAM, "U0ALICE", CHANNEL, "Lena's grinder is a gift, wrap it"))
    await aios.process(Remember(TEAM, "U0BOB", CHANNEL, "lena's grinder is a gift,   wrap it"))
    await aios.process(Recall(TEAM, "U0ALICE", CHANNEL, "grinder gift"))
    await aios.process(Forget("T0OTHERTEAM", "U0EVE", CHANNEL, "M-1"))
    await aios.process(Forget(TEAM, "U0ALICE", CHANNEL, "grinder"))
    await aios.process(Recall(TEAM, "U0ALICE", CHANNEL, "grinder gift"))
    await aios.process(Forget(TEAM, "U0ALICE", CHANNEL, "m-99999999999999999999"))
    replies = [c.params["text"] for c in slack_api.calls_to("chat.postEphemeral")]
    assert replies[0] == "Remembered as `M-1`."
    assert replies[1] == "I already knew that (`M-1`)."
    assert "`M-1`" in replies[2] and "wrap it" in replies[2]
    assert replies[3] == "There is no memory M-1 here."  # another team cannot forget it
    assert replies[4] == "Forgot `M-1`."
    assert replies[5].startswith("I remember nothing about")
    assert replies[6] == "There is no memory M-99999999999999999999 here."  # wider than any key


async def test_an_unreachable_weaviate_leaves_the_bot_serving_from_sql(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    from tests.fakes.aios_process import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    aios = await start_aios(database_url, slack_api, clock, tmp_path, WEAVIATE_URL=closed)
    try:
        assert isinstance(aios.memory, EmbeddedMemoryStore)
        await aios.process(Remember(TEAM, "U0ALICE", CHANNEL, "Sam's skillet ships from Lisbon"))
        await ask(aios, "refund $5 on order 1004, late")
        assert [h.text for h in await aios.memory.search(TEAM, "skillet Lisbon")] == [
            "Sam's skillet ships from Lisbon"
        ]
    finally:
        await aios.close()
