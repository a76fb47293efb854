"""Runs recorded under one policy, replayed under another: the facts and the policy text are stored when the
policy judges, the replay gives the expected diff and summary, and it writes nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import sqlalchemy
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import col, select

from bot.bootstrap import Aios
from bot.explain import explain
from bot.queries import private_answer
from bot.replay import Scope, build_report
from bot.slack_app import build_slack_app
from bot.slash import parse_slash
from bot.web import build_web_app
from policies.engine import Policy
from policies.replay import Change
from runtime.intake import IncomingIntent
from runtime.messages import ProposeAction
from storage.records import Decision, PolicyVersion, ProposedAction, utcnow
from tests.conftest import Clock
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET, sign, slash_command
from tests.integration.conftest import CHANNEL, REQUESTER, ask, everything_stored, start_aios

CANDIDATE = """
version: 1
roles:
  manager: [U0MANAGER, U0MANAGER2]
rules:
  - id: refunds-over-300-are-denied
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 300.0
    verdict: deny
  - id: refunds-over-30-need-a-manager
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 30.0
    verdict: require_approval
    approvers: [manager]
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


async def record_three_runs(aios: Aios) -> None:
    await ask(aios, "refund order 1004 $50 scratched", thread_ts="1.1")  # allowed
    await ask(aios, "refund order 1001 $150 arrived broken", thread_ts="1.2")  # a manager
    await ask(aios, "refund order 1005 $400 arrived broken", thread_ts="1.3")  # two from finance


async def test_policy_decisions_keep_their_facts_and_the_policy_text_once(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await record_three_runs(aios)
        async with aios.units() as uow:
            session = uow.session
            decisions = (await session.exec(select(Decision).order_by(col(Decision.id)))).all()
            versions = (await session.exec(select(PolicyVersion))).all()
        facts = [d.facts for d in decisions if d.kind == "policy"]
        assert facts[0] == {
            "requester": REQUESTER,
            "roles": [],
            "groups": [],
            "run_totals": {"shop.refund": 50.0},
            "order_refunded": 0.0,
            "payment_refunded": 0.0,
            "requester_today": {},
            "action_facts": None,
        }
        assert facts[1] is not None and facts[1]["requester_today"] == {"shop.refund": 50.0}  # the first ran
        assert [(v.hash, v.text) for v in versions] == [
            (aios.policy.hash, (tmp_path / "policy.yaml").read_text())
        ]
    finally:
        await aios.close()


async def test_replay_under_another_policy_gives_the_diff_and_summary_and_writes_nothing(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await record_three_runs(aios)
        candidate = Policy.from_text(CANDIDATE, "candidate.yaml")
        before = await everything_stored(aios)

        an_hour_ago = utcnow() - timedelta(hours=1)
        report = await build_report(aios.units, candidate, Scope(since=an_hour_ago), keep=100)
        changes = [(r.recorded.run_id, r.recorded.rule_id, r.new.rule_id, r.change) for r in report.shown]
        assert changes == [
            (1, "small-refunds-are-fine", "refunds-over-30-need-a-manager", Change.STRICTER),
            (2, "refunds-over-100-need-a-manager", "refunds-over-30-need-a-manager", Change.DIFFERENT),
            (3, "big-refunds-need-two-from-finance", "refunds-over-300-are-denied", Change.STRICTER),
        ]
        assert report.summary.lines() == [
            "3 decisions in 3 runs replayed: 3 would change (2 stricter, 0 looser, 1 by another rule or "
            "approvers), in 3 runs.",
            "1 × shop.refund totalling $150.00 would have needed approval by manager (different)",
            "1 × shop.refund totalling $400.00 would have been denied (stricter)",
            "1 × shop.refund totalling $50.00 would have needed approval by manager (stricter)",
        ]
        assert report.summary_lines()[-1] == "Runs that would change: R-1, R-2, R-3."
        one_run = await build_report(aios.units, candidate, Scope(run_id=3), keep=100)
        assert [r.recorded.action_id for r in one_run.shown] == [3]

        # The Slack answer reads the same records, and the recorded policy (by a hash prefix) changes nothing.
        candidate_file = tmp_path / "candidate.yaml"
        candidate_file.write_text(CANDIDATE)
        now = clock()
        text, blocks = await private_answer(aios.units, parse_slash("replay R-3"), now, str(candidate_file))
        assert blocks is not None and "refunds-over-300-are-denied" in str(blocks)
        text, _ = await private_answer(
            aios.units, parse_slash(f"replay R-3 {aios.policy.hash[:8]}"), now, None
        )
        assert "0 would change" in text

        assert await everything_stored(aios) == before
    finally:
        await aios.close()


async def test_decisions_recorded_before_facts_were_kept_are_replayed_from_rebuilt_facts(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "refund order 1001 $25 scratched", thread_ts="1.1")
        async with aios.units() as uow:  # as the records of an older version look: a second refund, no facts
            second = await uow.add(
                ProposedAction(
                    run_id=1, name="shop.refund", params={"order_id": 1002, "amount": 20.0, "reason": "late"}
                )
            )
            assert second.id is not None
            await uow.add(
                Decision(
                    action_id=second.id,
                    kind="policy",
                    verdict="allow",
                    rule_id="small-refunds-are-fine",
                    policy_hash=aios.policy.hash,
                    actor="policy",
                )
            )
            await uow.session.exec(sqlalchemy.update(Decision).values(facts=None))
            await uow.commit()
        report = await build_report(
            aios.units, Policy.from_text(CANDIDATE, "candidate.yaml"), Scope(run_id=1), keep=100
        )
        assert all(r.partial for r in report.shown)
        # The second refund's run total is rebuilt from both: $45, past the candidate's $30.
        assert [r.change for r in report.shown] == [Change.SAME, Change.STRICTER]
        assert "partly reconstructed" in report.summary.lines()[-1]
    finally:
        await aios.close()


async def test_why_shows_the_rule_as_written_when_a_newer_policy_has_judged_since(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "refund order 1001 $150 arrived broken", thread_ts="1.1")
        assert "as written" not in await explain(aios.units, "D-1")
    finally:
        await aios.close()
    # A newer version that has the rule as it was (a comment added): nothing to show.
    policy_text = (tmp_path / "policy.yaml").read_text()
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=policy_text + "# reviewed\n")
    try:
        await ask(aios, "refund order 1003 $10 scratched", thread_ts="1.2")
        assert "as written" not in await explain(aios.units, "D-1")
    finally:
        await aios.close()
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=CANDIDATE)
    try:
        await ask(aios, "refund order 1004 $10 scratched", thread_ts="1.3")
        answer = await explain(aios.units, "D-1")
        assert "rule `refunds-over-100-need-a-manager` as written in policy" in answer
        assert 'run.totals["shop.refund"] &gt; 100.0' in answer
    finally:
        await aios.close()


async def test_two_replicas_store_a_policy_version_once(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    """Each process inserts the version it judges with if absent (once, then remembers): replicas starting on
    the same policy at the same time leave one row, and neither fails."""
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    second = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await asyncio.gather(
            ask(first, "refund order 1004 $10 scratched", thread_ts="1.1"),
            ask(second, "refund order 1003 $10 scratched", thread_ts="1.2"),
        )
        await ask(first, "refund order 1002 $10 scratched", thread_ts="1.3")
        async with first.units() as uow:
            versions = (await uow.session.exec(select(PolicyVersion))).all()
            decisions = (await uow.session.exec(select(Decision))).all()
        assert [v.hash for v in versions] == [first.policy.hash]
        assert len(decisions) == 3 and all(d.policy_hash == first.policy.hash for d in decisions)
    finally:
        await first.close()
        await second.close()


async def test_an_action_proposed_through_mcp_keeps_its_facts_and_replays(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        intent_id = await aios.accept(
            IncomingIntent(
                source="mcp",
                team_id="T0FAKE",
                channel=CHANNEL,
                thread_ts=None,
                user=REQUESTER,
                text="via MCP",
            )
        )
        assert intent_id is not None
        refund = {"order_id": 1004, "amount": 40.0, "reason": "late"}
        await aios.bus.handle(
            ProposeAction(intent_id, "returns", "shop.refund", refund, "the customer asked")
        )
        async with aios.units() as uow:
            decision = (await uow.session.exec(select(Decision))).one()
        assert decision.facts is not None
        assert (decision.facts["requester"], decision.facts["run_totals"]) == (
            REQUESTER,
            {"shop.refund": 40.0},
        )
        report = await build_report(aios.units, Policy.from_text(CANDIDATE), Scope(run_id=1), keep=10)
        assert [(r.change, r.partial) for r in report.shown] == [(Change.STRICTER, False)]
    finally:
        await aios.close()


async def test_a_hash_prefix_that_names_two_stored_versions_asks_for_more_digits(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "refund order 1004 $10 scratched", thread_ts="1.1")
        async with aios.units() as uow:
            for n in (1, 2):
                await uow.add(PolicyVersion(hash=f"abcd{n}" + "0" * 59, text=CANDIDATE))
            await uow.commit()
        text, blocks = await private_answer(aios.units, parse_slash("replay R-1 ABCD"), clock(), None)
        assert text == (
            "Abcd matches more than one stored policy version (abcd10000000, abcd20000000); give more digits."
        )
        assert blocks is None
        text, blocks = await private_answer(aios.units, parse_slash("replay R-1 abcd2"), clock(), None)
        assert blocks is not None and "stored policy abcd20000000" in text
        text, _ = await private_answer(aios.units, parse_slash("replay R-1"), clock(), None)
        assert text.startswith("No candidate policy: set AIOS_CANDIDATE_POLICY_FILE")
    finally:
        await aios.close()


async def test_a_run_id_too_big_for_any_table_is_answered_as_no_such_run_through_slack(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    """The key does not fit the database's integer column: asking for it would overflow the driver (int4 on
    PostgreSQL, SQLite's 64-bit integer) instead of finding nothing."""
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(aios, build_slack_app(aios, client, SIGNING_SECRET), SIGNING_SECRET)
    try:
        await ask(aios, "refund order 1004 $10 scratched", thread_ts="1.1")
        async with TestClient(TestServer(app)) as events:
            for text in ("replay R-99999999999", "replay R-99999999999999999999 abcd", "why R-99999999999"):
                body, content_type = slash_command(text, user=REQUESTER, channel=CHANNEL)
                response = await events.post(
                    "/slack/events", data=body, headers={"Content-Type": content_type, **sign(body)}
                )
                assert response.status == 200
                await aios.background.drain()
        said = [c.params["text"] for c in slack_api.calls_to("chat.postEphemeral")]
        assert said == [
            "There is no run R-99999999999.",
            "There is no run R-99999999999999999999.",
            "There is no record R-99999999999.",
        ]
    finally:
        await aios.close()
