"""Model spend and prompt-cache use for a scripted multi-call scenario, against the local fake Messages API.

Each run is one intent in free words: the cheap model routes it (1 call); the agent's first tool call is
invalid and goes back as an error tool_result, the second is valid (2 calls). Prints `/aios cost today` and
the share of prompt tokens read from the cache, first run versus the repeats. Run from the repository root:

    .venv/bin/python -m bench.llm_cost [--runs 5]

The fake caches a marked prefix only from the real API's minimum length (1024 tokens); the second pass
lowers that minimum to show what caching saves once prompts are long enough to be cached.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.queries import answer
from bot.slash import parse_slash
from storage.records import LlmCall
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, Script, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import ask, start_aios

INTENT = "the customer on order 1003 says the blender arrived in pieces, sort it out and tell her"
EMAIL = {"to": "ana@example.com", "subject": "Your blender", "body": "Sorry! A full refund is on its way."}


def respond(body: dict[str, Any]) -> Script:
    """Route, then an invalid call, then the corrected one."""
    if body.get("tools", [{}])[0].get("name") == "route_to_agent":
        return Reply("", (ToolUse("route_to_agent", {"agent": "returns"}),))
    last = body["messages"][-1]["content"]
    if isinstance(last, list) and any(block.get("is_error") for block in last):
        return Reply(
            "Full refund, and a note to Ana.",
            (
                ToolUse("shop_refund", {"order_id": 1003, "amount": 129.0, "reason": "arrived in pieces"}),
                ToolUse("email_send", EMAIL),
            ),
        )
    return Reply("Refunding in full.", (ToolUse("shop_refund", {"order_id": 1003, "amount": "full"}),))


def cache_share(calls: list[LlmCall]) -> float:
    prompt = sum(c.input_tokens + c.cache_read_tokens + c.cache_creation_tokens for c in calls)
    return sum(c.cache_read_tokens for c in calls) / prompt if prompt else 0.0


async def scenario(runs: int, min_cacheable_tokens: int) -> None:
    with (
        tempfile.TemporaryDirectory() as workdir,
        FakeSlackApi() as slack,
        FakeAnthropicApi(min_cacheable_tokens) as anthropic,
    ):
        anthropic.default = respond
        aios = await start_aios(
            f"sqlite+aiosqlite:///{workdir}/bench.db",
            slack,
            Clock(),
            Path(workdir),
            ANTHROPIC_API_KEY=API_KEY,
            ANTHROPIC_BASE_URL=anthropic.url,
        )
        try:
            for n in range(runs):
                await ask(aios, INTENT, thread_ts=f"1700000400.{n:06d}")
            async with aios.units() as uow:
                calls = list((await uow.session.exec(select(LlmCall).order_by(col(LlmCall.id)))).all())
            report = await answer(aios.units, parse_slash("cost today"), aios.clock())
        finally:
            await aios.close()
    first = [c for c in calls if c.run_id == calls[0].run_id]
    repeats = [c for c in calls if c.run_id != calls[0].run_id]
    print(f"--- minimum cacheable prefix {min_cacheable_tokens} tokens: {len(calls)} calls in {runs} runs")
    print(report.replace("```", "\n"))
    print(
        f"prompt-cache read share: first run {cache_share(first):.0%}, repeated runs {cache_share(repeats):.0%}; "
        f"cost per run: first ${sum(c.cost_usd for c in first):.5f}, "
        f"repeats ${sum(c.cost_usd for c in repeats) / max(runs - 1, 1):.5f}\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(scenario(args.runs, 1024))
    asyncio.run(scenario(args.runs, 0))
