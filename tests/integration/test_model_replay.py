"""Runs planned by Claude (the local fake Messages API), planned again by another model from what each run was
given: the thread history and memories recorded with the run reach the new model, the proposals are compared
and judged, the costs are counted from the calls, a declined estimate calls nothing, a budget with too little
left refuses, and nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import stamina
from sqlmodel import col, select

from agents.claude import ClaudeLLM
from agents.llm import LLMError, Usage
from agents.pricing import PriceTable
from bot.bootstrap import Aios
from bot.model_replay import Estimate, ModelReplayReport, Outcome, model_replay
from bot.replay import Scope
from bot.replay_context import offered_actions, replay_registry
from connectors.registry import installed_action_params
from policies.engine import Policy
from storage.records import LlmCall, Run, utcnow
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, Script, ToolUse, overloaded
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, ask, everything_stored, start_aios, write_policy

MODEL = "claude-haiku-4-5"
RECORDED = (
    # (request, the tool call planned then)
    (
        "refund order 1004 $50 scratched",
        ToolUse("shop_refund", {"order_id": 1004, "amount": 50.0, "reason": "scratched"}),
    ),
    (
        "refund order 1001 $150 arrived broken",
        ToolUse("shop_refund", {"order_id": 1001, "amount": 150.0, "reason": "arrived broken"}),
    ),
    (
        "refund order 1002 $20 apron stained",
        ToolUse("shop_refund", {"order_id": 1002, "amount": 20.0, "reason": "stained"}),
    ),
    (
        "refund order 1005 $30 grinder is loud",
        ToolUse("shop_refund", {"order_id": 1005, "amount": 30.0, "reason": "loud"}),
    ),
)
EMAIL_TOM = ToolUse(
    "email_send", {"to": "tom@example.com", "subject": "Your apron", "body": "Sorry about the stain."}
)


def replay_answers(body: dict[str, Any]) -> Script:
    """The replay's model: the same for 1004, more for 1001, an email instead of 1002's refund, nothing for
    1005."""
    last = body["messages"][-1]["content"]
    if "1004" in last:
        return Reply("Refunding $50.", (RECORDED[0][1],))
    if "1001" in last:
        return Reply(
            "Refunding in full.",
            (ToolUse("shop_refund", {"order_id": 1001, "amount": 320.0, "reason": "arrived broken"}),),
        )
    if "1002" in last:
        return Reply("Writing to Tom first.", (EMAIL_TOM,))
    return Reply("A loud grinder is not a reason for a refund.")


@pytest.fixture
async def recorded(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    """Four runs planned by Claude; the second in a thread where a person wrote first, the first given a
    memory about its order."""
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        await aios.memory.remember("T0FAKE", "Sam asked for email only", kind="customer", key="order:1004")
        anthropic_api.script(*(Reply("On it.", (call,)) for _, call in RECORDED))
        slack_api.add_human_message(CHANNEL, "2.0", "2.0", "U0BOB", "order 1001 arrived in pieces")
        for index, (text, _) in enumerate(RECORDED):
            thread = f"{index + 1}.0"
            await ask(aios, text, thread_ts=thread, message_ts=f"{index + 1}.5" if index == 1 else None)
        yield aios
    finally:
        await aios.close()


class Answer:
    """A confirmation that keeps the estimates it was shown and gives one answer."""

    def __init__(self, yes: bool) -> None:
        self.yes = yes
        self.estimates: list[Estimate] = []

    def __call__(self, estimate: Estimate) -> bool:
        self.estimates.append(estimate)
        return self.yes


async def replay_with(
    aios: Aios,
    api: FakeAnthropicApi,
    confirm: Callable[[Estimate], bool],
    policy: Policy | None = None,
    *,
    run_id: int | None = None,
    key: str = API_KEY,
) -> ModelReplayReport | None:
    llm = ClaudeLLM.from_settings(key, api.url, dispatch_model=MODEL, agent_model=MODEL)
    try:
        return await model_replay(
            aios.units,
            scope=Scope(run_id=run_id) if run_id else Scope(since=utcnow() - timedelta(days=7)),
            agent=None,
            llm=llm,
            prices=PriceTable.with_overrides(None),
            policy=policy or aios.policy,
            registry=replay_registry(offered_actions(aios.settings.connector_settings())),
            confirm=confirm,
        )
    finally:
        await llm.close()


async def test_each_run_is_planned_again_from_what_it_was_given_and_compared(
    recorded: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    async with recorded.units() as uow:
        runs = (await uow.session.exec(select(Run).order_by(col(Run.id)))).all()
        calls = (await uow.session.exec(select(LlmCall))).all()
    assert [run.history for run in runs] == [
        [],
        [{"role": "user", "text": "<@U0BOB> wrote: order 1001 arrived in pieces"}],
        [],
        [],
    ]
    assert runs[0].memories_used != []
    before = await everything_stored(recorded)
    seen = len(anthropic_api.requests)
    anthropic_api.default = replay_answers
    answer = Answer(yes=True)

    report = await replay_with(recorded, anthropic_api, answer)

    assert report is not None
    assert [(r.run.run_id, r.outcome) for r in report.runs] == [
        (runs[0].id, Outcome.SAME),
        (runs[1].id, Outcome.DIFFERENT_PARAMETERS),
        (runs[2].id, Outcome.DIFFERENT_ACTION),
        (runs[3].id, Outcome.NOTHING_PROPOSED),
    ]
    # $320 on 1001 now needs two from finance, as $150 needed a manager: the same verdict; the email to Tom
    # needs a manager where the $20 refund was allowed.
    assert [r.verdicts_changed for r in report.runs] == [False, False, True, True]
    assert [p.rule_id for p in report.runs[1].proposals] == ["big-refunds-need-two-from-finance"]
    requests = anthropic_api.requests[seen:]
    assert [r["model"] for r in requests] == [MODEL] * 4
    first, second = requests[0], requests[1]
    assert "Sam asked for email only" in first["system"][0]["text"]  # the recorded memory
    assert "order 1004: total" not in first["system"][0]["text"]  # the shop was not asked
    assert second["messages"][0] == {
        "role": "user",
        "content": "<@U0BOB> wrote: order 1001 arrived in pieces",
    }

    # Costs: the replay's from its answers' usage at the new model's price; the original's from the ledger.
    haiku = PriceTable.with_overrides(None).price(MODEL)
    replay_cost = sum(
        haiku.cost(Usage(**{k: v for k, v in body["usage"].items()}))
        for status, body in anthropic_api.responses[seen:]
        if status == 200
    )
    assert report.spend.cost == pytest.approx(replay_cost)
    assert report.spend.calls == 4
    [estimate] = answer.estimates
    assert estimate.original.cost == pytest.approx(sum(c.cost_usd for c in calls if c.role == "agent"))
    assert estimate.original.models == ("claude-sonnet-4-6",)
    assert estimate.from_records == 4
    assert estimate.input_tokens == sum(
        c.input_tokens + c.cache_creation_tokens + c.cache_read_tokens for c in calls
    )
    text = "\n".join(report.text_lines())
    assert (
        "4 runs re-planned: 1 same, 1 different action, 1 different parameters, 1 nothing proposed." in text
    )
    assert "Live lookups were not repeated" in text
    assert f"the original planning ${estimate.original.cost:.4f} (4 calls, claude-sonnet-4-6)" in text

    assert (
        await everything_stored(recorded) == before
    )  # not a row written: no run, no ledger entry, no budget


async def test_declining_the_estimate_calls_no_model(recorded: Aios, anthropic_api: FakeAnthropicApi) -> None:
    seen = len(anthropic_api.requests)
    before = await everything_stored(recorded)

    answer = Answer(yes=False)

    assert await replay_with(recorded, anthropic_api, answer) is None
    assert len(answer.estimates) == 1

    assert len(anthropic_api.requests) == seen
    assert await everything_stored(recorded) == before


async def test_a_budget_with_too_little_left_is_named_before_any_call(
    recorded: Aios, anthropic_api: FakeAnthropicApi, tmp_path: Path
) -> None:
    budget = """budgets:
  - id: returns-daily
    scope: agent
    match: returns
    period: day
    limit_usd: 0.002
"""
    policy = Policy.from_file(write_policy(tmp_path, budget), installed_action_params())
    seen = len(anthropic_api.requests)
    answer = Answer(yes=False)

    assert await replay_with(recorded, anthropic_api, answer, policy) is None

    [estimate] = answer.estimates
    assert estimate.over_budget is not None
    assert estimate.over_budget.startswith(f"the replay may cost ${estimate.cost:.4f} against budget ")
    assert "returns-daily (agent returns), which has $0.0020 left this day" in estimate.over_budget
    assert len(anthropic_api.requests) == seen


async def test_a_run_planned_offline_is_estimated_from_its_prompt(
    aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    await ask(aios, "refund order 1004, $50, scratched")
    anthropic_api.default = replay_answers
    answer = Answer(yes=True)

    report = await replay_with(aios, anthropic_api, answer)

    [estimate] = answer.estimates
    assert (estimate.from_records, estimate.original.cost, estimate.output_tokens) == (0, 0.0, 1024)
    assert estimate.input_tokens > 500  # the returns agent's prompt and tools, in tokens of three characters
    assert report is not None
    [run] = report.runs
    assert run.outcome is Outcome.SAME
    assert run.run.history == ()


async def test_a_forgotten_memory_and_a_run_from_before_history_was_kept_are_named(
    recorded: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    async with recorded.units() as uow:
        first, second = (await uow.session.exec(select(Run).order_by(col(Run.id)).limit(2))).all()
        [memory_id] = first.memories_used
        second.history = None  # as on a run planned before the history was kept
        uow.session.add(second)
        await uow.commit()
    assert await recorded.memory.forget("T0FAKE", memory_id)
    anthropic_api.default = replay_answers
    seen = len(anthropic_api.requests)

    report = await replay_with(recorded, anthropic_api, Answer(yes=True))

    assert report is not None
    text = report.text_lines()
    assert f"R-{first.id}: memory M-{memory_id} was forgotten since; replayed without it" in text
    assert f"R-{second.id}: its thread history was not recorded (planned before it was kept)" in text
    first_request, second_request = anthropic_api.requests[seen : seen + 2]
    assert "Sam asked for email only" not in first_request["system"][0]["text"]
    assert [m["content"] for m in second_request["messages"]] == ["refund order 1001 $150 arrived broken"]


async def test_a_key_the_model_refuses_stops_the_replay_at_the_first_call(
    recorded: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    seen = len(anthropic_api.requests)
    with pytest.raises(LLMError) as refused:
        await replay_with(recorded, anthropic_api, Answer(yes=True), key="sk-ant-wrong")
    assert refused.value.kind == "auth"
    assert len(anthropic_api.requests) == seen + 1


async def test_one_run_can_be_replayed_and_is_shown_whole(
    recorded: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    anthropic_api.default = replay_answers
    async with recorded.units() as uow:
        first = (await uow.session.exec(select(Run).order_by(col(Run.id)))).first()
    assert first is not None and first.id is not None

    report = await replay_with(recorded, anthropic_api, Answer(yes=True), run_id=first.id)

    assert report is not None
    lines = report.text_lines()
    assert lines[0] == f"Model replay of R-{first.id} with {MODEL}"
    assert lines[-1].startswith(f'= R-{first.id} returns "refund order 1004 $50 scratched": shop.refund ')
    assert lines[-1].endswith("(allow) — same")


async def test_a_model_that_does_not_answer_one_run_is_that_run_s_outcome(
    recorded: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    anthropic_api.default = replay_answers
    anthropic_api.script(overloaded())  # the first run's only attempt

    with stamina.set_testing(True, attempts=1):
        report = await replay_with(recorded, anthropic_api, Answer(yes=True))

    assert report is not None
    assert [r.outcome for r in report.runs] == [
        Outcome.MODEL_ERROR,
        Outcome.DIFFERENT_PARAMETERS,
        Outcome.DIFFERENT_ACTION,
        Outcome.NOTHING_PROPOSED,
    ]
    assert not report.runs[0].verdicts_changed
    assert report.runs[0].line().endswith("the model did not answer (overloaded)")
    assert (
        "3 nothing proposed" not in report.summary_lines()[0]
        and "1 model errors" in report.summary_lines()[0]
    )
