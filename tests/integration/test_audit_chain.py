"""The audit chain on a real database: a gated refund through the whole bot verifies; then rows are edited,
deleted and inserted with plain SQL, as someone with database access would, and verify names the record."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Table, text
from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from bot.audit_proof import ParamsHasher, installed_action_models, roles_of_policy
from bot.bootstrap import Aios
from connectors.actions import CmsCreateDraft, ShopRefund
from connectors.registry import params_hash
from runtime.messages import DecideApproval, RequestBudget
from storage.audit import UNPROVEN, AuditReport, Problem, canonical, entry_hash, sha256, short_ref, verify
from storage.engine import create_engine
from storage.migrate import alembic_config, upgrade_to_head
from storage.records import (
    Approval,
    ApprovalVote,
    AuditEntry,
    Capability,
    Decision,
    Execution,
    Intent,
    ProposedAction,
    Run,
)
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, REQUESTER, ask, start_aios, write_policy


async def audit(aios: Aios) -> AuditReport:
    return await verify(aios.units, ParamsHasher(installed_action_models()), roles_of_policy)


@pytest.fixture
async def raw(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A plain connection to the same database, outside the bot's units of work."""
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def sql(engine: AsyncEngine, statement: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(statement), params)


async def one(engine: AsyncEngine, statement: str, **params: Any) -> Any:
    async with engine.connect() as connection:
        return (await connection.execute(text(statement), params)).scalar_one()


async def approved_refund(aios: Aios) -> Approval:
    """A $250 refund a manager approves (it executes), after a small one the policy allows on its own."""
    await ask(aios, "refund $40 on order 1002, strap tore", thread_ts="1700000000.000001")
    await ask(aios, "refund order 1001, $250, arrived broken")
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, "U0RANDOM", approve=True, channel=CHANNEL))  # refused
    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
    return approval


async def test_a_gated_refund_through_the_bot_verifies(aios: Aios) -> None:
    await approved_refund(aios)

    report = await audit(aios)

    assert report.problems == []
    assert report.executions == 2
    async with aios.units() as uow:
        entries = (await uow.session.exec(select(AuditEntry).order_by(col(AuditEntry.seq)))).all()
        executions = (await uow.session.exec(select(Execution))).all()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert report.entries == len(entries) and report.head_hash == entries[-1].entry_hash
    # An update is a new entry: each execution was recorded started, then succeeded.
    for execution in executions:
        recorded = [
            e.content for e in entries if (e.record_table, e.record_id) == ("execution", str(execution.id))
        ]
        assert [c.count('"status":"succeeded"') for c in recorded] == [0, 1]
    kinds = {e.record_table for e in entries}
    assert kinds == {
        "policy_version",
        "proposed_action",
        "decision",
        "approval",
        "approval_vote",
        "capability",
        "execution",
        "execution_attempt",
    }


async def test_an_edited_verdict_is_named(aios: Aios, raw: AsyncEngine) -> None:
    approval = await approved_refund(aios)
    await sql(raw, "UPDATE decision SET verdict = 'allow' WHERE id = :id", id=approval.decision_id)

    first = (await audit(aios)).first()

    assert first is not None and (first.kind, first.record) == ("edited", f"D-{approval.decision_id}")


async def test_a_deleted_vote_is_named(aios: Aios, raw: AsyncEngine) -> None:
    approval = await approved_refund(aios)
    vote_id = await one(raw, "SELECT id FROM approval_vote WHERE approval_id = :id", id=approval.id)
    await sql(raw, "DELETE FROM approval_vote WHERE id = :id", id=vote_id)

    report = await audit(aios)

    first = report.first()
    assert first is not None and (first.kind, first.record) == ("deleted", f"approval vote {vote_id}")
    # Without its vote the approval no longer covers the refund's execution either.
    assert [p.kind for p in report.problems] == ["deleted", "execution without cover"]


async def test_an_execution_inserted_by_sql_is_named(aios: Aios, raw: AsyncEngine) -> None:
    approval = await approved_refund(aios)
    await sql(
        raw,
        "INSERT INTO execution (action_id, idempotency_key, status, result, started_at) "
        "SELECT :action, 'forged', 'succeeded', '{}', created_at FROM proposed_action WHERE id = :action",
        action=approval.action_id,
    )
    forged = await one(raw, "SELECT id FROM execution WHERE idempotency_key = 'forged'")

    first = (await audit(aios)).first()

    assert first is not None and (first.kind, first.record) == ("inserted out of order", f"E-{forged}")


async def test_a_deleted_audit_entry_is_named(aios: Aios, raw: AsyncEngine) -> None:
    await approved_refund(aios)
    await sql(raw, "DELETE FROM audit_entry WHERE seq = 5")

    first = (await audit(aios)).first()

    assert first is not None and (first.kind, first.record, first.seq) == ("deleted", "audit entry #5", 6)


async def test_the_last_audit_entry_deleted_names_its_record(aios: Aios, raw: AsyncEngine) -> None:
    await approved_refund(aios)
    table, key = await entry_at(raw, "(SELECT max(seq) FROM audit_entry)")
    await sql(raw, "DELETE FROM audit_entry WHERE seq = (SELECT max(seq) FROM audit_entry)")

    first = (await audit(aios)).first()

    # The record now differs from its previous entry (or has none left).
    assert first is not None and first.kind in ("edited", "inserted out of order")
    assert first.record == short_ref(table, key)


async def test_swapped_audit_entries_are_named(aios: Aios, raw: AsyncEngine) -> None:
    await approved_refund(aios)
    table, key = await entry_at(raw, "4")
    await sql(raw, "UPDATE audit_entry SET seq = -1 WHERE seq = 3")
    await sql(raw, "UPDATE audit_entry SET seq = 3 WHERE seq = 4")
    await sql(raw, "UPDATE audit_entry SET seq = 4 WHERE seq = -1")

    first = (await audit(aios)).first()

    assert first is not None and (first.kind, first.record, first.seq) == (
        "inserted out of order",
        short_ref(table, key),
        3,
    )


async def test_bookkeeping_columns_change_without_an_entry(aios: Aios, raw: AsyncEngine) -> None:
    """Which process holds an execution and which Slack message shows an approval say nothing about what
    was decided: a take-over or a re-post changes them, and the trail stays intact."""
    await approved_refund(aios)
    entries = await one(raw, "SELECT count(*) FROM audit_entry")
    await sql(raw, "UPDATE execution SET owner = 999")
    await sql(raw, "UPDATE approval SET message_ts = '1700000099.000100'")

    report = await audit(aios)

    assert report.problems == [] and report.entries == entries


def bot_writing_between_reads(
    aios: Aios, action_id: int, also: Callable[[], Coroutine[Any, Any, None]] | None = None
) -> Callable[[], Any]:
    """Units of work for verify that each let a live bot commit first: a new decision and an edited action,
    appended to the chain as the bot appends them (and ``also``, when given)."""
    reads = writes = 0

    @asynccontextmanager
    async def units() -> AsyncIterator[UnitOfWork]:
        nonlocal reads, writes
        reads += 1
        # Before every third read: a bot committing before every read would keep verify reading the chain.
        if reads % 3 == 0:
            writes += 1
            async with aios.units() as uow:
                await uow.add(Decision(action_id=action_id, kind="human", verdict="vote", actor=f"U{writes}"))
                action = await uow.get(ProposedAction, action_id)
                assert action is not None
                action.rationale = f"reworded {writes} times"
                uow.session.add(action)
                await uow.commit()
            if also is not None:
                await also()
        async with aios.units() as uow:
            yield uow

    return units


async def test_a_store_written_while_verify_reads_it_verifies(aios: Aios) -> None:
    """Records and entries committed between verify's reads (of the chain, of each batch of records) are
    a busy store, not a broken one."""
    approval = await approved_refund(aios)

    report = await verify(
        bot_writing_between_reads(aios, approval.action_id),
        ParamsHasher(installed_action_models()),
        roles_of_policy,
        batch=5,  # more than the two entries each write adds, as a reader outpaces the bot
    )

    assert report.problems == []
    async with aios.units() as uow:
        decisions = (await uow.session.exec(select(Decision))).all()
    assert len([d for d in decisions if d.actor[1:].isdigit()]) >= 5  # the bot wrote between verify's reads


async def test_a_record_edited_by_sql_while_verify_reads_is_still_named(aios: Aios, raw: AsyncEngine) -> None:
    approval = await approved_refund(aios)

    async def edit() -> None:
        await sql(raw, "UPDATE decision SET verdict = 'allow' WHERE id = :id", id=approval.decision_id)

    report = await verify(
        bot_writing_between_reads(aios, approval.action_id, edit),
        ParamsHasher(installed_action_models()),
        roles_of_policy,
        batch=5,  # more than the two entries each write adds, as a reader outpaces the bot
    )

    assert [(p.kind, p.record) for p in report.problems] == [("edited", f"D-{approval.decision_id}")]


async def rewrite_approval(aios: Aios, approval_id: int, **columns: Any) -> None:
    """A change through the bot's own unit of work: appended to the chain like any write, so only the gate
    proof can tell whether it is allowed."""
    async with aios.units() as uow:
        approval = await uow.get(Approval, approval_id)
        assert approval is not None
        for name, value in columns.items():
            setattr(approval, name, value)
        uow.session.add(approval)
        await uow.commit()


async def voted(aios: Aios, approval_id: int) -> ApprovalVote:
    async with aios.units() as uow:
        query = select(ApprovalVote).where(col(ApprovalVote.approval_id) == approval_id)
        return (await uow.session.exec(query)).one()


@pytest.mark.parametrize(
    ("escalated", "covered"), [(timedelta(minutes=-1), True), (timedelta(minutes=1), False)]
)
async def test_escalate_to_counts_only_votes_cast_once_escalated(
    aios: Aios, escalated: timedelta, covered: bool
) -> None:
    """The manager's vote on a request for finance, escalating to managers: it counts if cast after the
    escalation, not before (the request escalated later all the same)."""
    approval = await approved_refund(aios)
    assert approval.id is not None
    vote = await voted(aios, approval.id)
    await rewrite_approval(
        aios,
        approval.id,
        approver_roles=["finance"],
        escalate_to=["manager"],
        escalate_at=vote.created_at + escalated,
        escalated_at=vote.created_at + escalated,
    )

    report = await audit(aios)

    if covered:
        assert report.problems == []
    else:
        assert [(p.kind, p.detail) for p in report.problems] == [
            (
                "execution without cover",
                f"AP-{approval.id} has 0 vote(s) from approvers its policy allowed; it needs 1",
            )
        ]


async def test_an_approver_through_a_user_group_is_noted_unproven(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, raw: AsyncEngine
) -> None:
    """Managers are a Slack user group: the bot looked its members up for the click, verify cannot. The
    execution is noted as unproven, not a break; and so is a vote forged for an outsider, never covered."""
    policy = (
        write_policy(tmp_path)
        .read_text()
        .replace("manager: [U0MANAGER, U0MANAGER2]", "manager: [S0MANAGERS]")
    )
    slack_api.groups["S0MANAGERS"] = [MANAGER]
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=policy)
    try:
        approval = await approved_refund(aios)
        assert approval.id is not None
        execution = await one(raw, "SELECT id FROM execution WHERE action_id = :id", id=approval.action_id)

        report = await audit(aios)

        assert report.problems == [] and report.executions == 2
        assert report.unproven == [
            Problem(
                UNPROVEN,
                f"E-{execution}",
                f"AP-{approval.id} counts U0MANAGER only as a member of S0MANAGERS: Slack user groups' members "
                "are not stored, so this vote is taken on trust",
            )
        ]

        vote = await voted(aios, approval.id)
        async with aios.units() as uow:  # the vote and the grant rewritten for someone outside the group
            vote.user = "U0OUTSIDER"
            capability = (
                await uow.session.exec(
                    select(Capability).where(col(Capability.action_id) == approval.action_id)
                )
            ).one()
            capability.granted_by = "U0OUTSIDER"
            uow.session.add_all([vote, capability])
            await uow.commit()

        forged = await audit(aios)

        assert forged.problems == []
        assert [
            (p.record, "U0OUTSIDER only as a member of S0MANAGERS" in p.detail) for p in forged.unproven
        ] == [(f"E-{execution}", True)]
    finally:
        await aios.close()


async def test_a_forger_who_recomputes_the_chain_is_caught_by_the_gate(aios: Aios, raw: AsyncEngine) -> None:
    """An execution for an action still awaiting approval, with an audit entry appended by hand that links
    to the head: the chain is intact, but nothing allowed that execution."""
    await ask(aios, "refund order 1001, $250, arrived broken")
    async with aios.units() as uow:
        action = (await uow.session.exec(select(ProposedAction))).one()
    await sql(
        raw,
        "INSERT INTO execution (action_id, idempotency_key, status, result, started_at) "
        "SELECT :action, 'forged', 'succeeded', '{}', created_at FROM proposed_action WHERE id = :action",
        action=action.id,
    )
    executions: Table = Execution.__table__  # type: ignore[attr-defined]
    entries: Table = AuditEntry.__table__  # type: ignore[attr-defined]
    async with raw.connect() as connection:
        query = core_select(executions).where(executions.c.idempotency_key == "forged")
        row = (await connection.execute(query)).mappings().one()
        last = core_select(entries).order_by(entries.c.seq.desc()).limit(1)
        head = (await connection.execute(last)).mappings().one()
    content = canonical("execution", row)
    now = head["recorded_at"]  # the forger reuses the head's time, written back in the store's own format
    seq = head["seq"] + 1
    content_hash = sha256(content)
    await sql(
        raw,
        "INSERT INTO audit_entry (seq, record_table, record_id, content, content_hash, prev_hash, entry_hash, "
        "recorded_at) SELECT :seq, 'execution', :id, :content, :content_hash, :prev, :hash, recorded_at "
        "FROM audit_entry WHERE seq = :head",
        seq=seq,
        id=str(row["id"]),
        content=content,
        content_hash=content_hash,
        prev=head["entry_hash"],
        hash=entry_hash(head["entry_hash"], seq, "execution", str(row["id"]), content_hash, now),
        head=head["seq"],
    )

    report = await audit(aios)

    assert [(p.kind, p.record) for p in report.problems] == [("execution without cover", f"E-{row['id']}")]


async def entry_at(engine: AsyncEngine, seq: str) -> tuple[str, str]:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(f"SELECT record_table, record_id FROM audit_entry WHERE seq = {seq}")
            )
        ).one()
    return str(row[0]), str(row[1])


async def test_two_writers_appending_at_once_make_one_chain(database_url: str) -> None:
    """Two engines, as two replicas would have, each committing many audited writes concurrently."""
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        await upgrade_to_head(engines[0])
        factories = [UnitOfWorkFactory.for_engine(engine) for engine in engines]
        async with factories[0]() as uow:
            intent = await uow.add(Intent(source="console", channel=CHANNEL, user=MANAGER, text="x"))
            run = await uow.add(Run(intent_id=intent.id or 0, agent="returns"))
            action = await uow.add(ProposedAction(run_id=run.id or 0, name="shop.refund", params={}))
            await uow.commit()
        assert action.id is not None

        async def decide(number: int) -> None:
            async with factories[number % 2]() as uow:
                await uow.add(
                    Decision(action_id=action.id or 0, kind="human", verdict="vote", actor=f"U{number}")
                )
                await uow.commit()

        await asyncio.gather(*(decide(n) for n in range(60)))

        report = await verify(factories[1], lambda name, params: set(), lambda text: None)
        assert report.problems == []
        assert report.entries == 61  # the action and the 60 decisions, each once, one after another
    finally:
        for engine in engines:
            await engine.dispose()


async def shared_action(units: UnitOfWorkFactory) -> int:
    async with units() as uow:
        intent = await uow.add(Intent(source="console", channel=CHANNEL, user=MANAGER, text="x"))
        run = await uow.add(Run(intent_id=intent.id or 0, agent="returns"))
        action = await uow.add(ProposedAction(run_id=run.id or 0, name="shop.refund", params={}))
        await uow.commit()
    assert action.id is not None
    return action.id


async def vote_and_reword(units: UnitOfWorkFactory, action_id: int, actor: str, rationale: str) -> None:
    """One transaction: a new decision, and the action (which every writer rewords) given ``rationale``."""
    async with units() as uow:
        await uow.add(Decision(action_id=action_id, kind="human", verdict="vote", actor=actor))
        action = await uow.get(ProposedAction, action_id)
        assert action is not None
        action.rationale = rationale
        uow.session.add(action)
        await uow.commit()


async def assert_one_chain(units: UnitOfWorkFactory, actors: set[str]) -> None:
    """The chain verifies, its seqs follow one another from 1, and each decision has one entry: none lost, none
    twice."""
    report = await verify(units, lambda name, params: set(), lambda text: None)
    assert report.problems == []
    async with units() as uow:
        entries = (await uow.session.exec(select(AuditEntry).order_by(col(AuditEntry.seq)))).all()
        decisions = (await uow.session.exec(select(Decision))).all()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    decided = [e.record_id for e in entries if e.record_table == "decision"]
    assert sorted(decided) == sorted(str(d.id) for d in decisions) and {d.actor for d in decisions} == actors


async def test_two_engines_rewording_one_record_at_once_make_one_chain(database_url: str) -> None:
    """Two engines, as two replicas would have, each knowing the head it last left, write at once, every
    transaction a new decision and the same action reworded: each engine's known head and last entry of the
    action are soon out of date, and every append must still link to the chain's head and compare the action
    with its last entry whoever wrote it."""
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        await upgrade_to_head(engines[0])
        factories = [UnitOfWorkFactory.for_engine(engine) for engine in engines]
        action_id = await shared_action(factories[0])
        actors = {f"U{number}" for number in range(40)}

        async def write(number: int) -> None:
            # Two rationales only: an engine often sets the one its known last entry of the action holds.
            await vote_and_reword(factories[number % 2], action_id, f"U{number}", f"by {number // 2 % 2}")

        await asyncio.gather(*(write(number) for number in range(40)))

        await assert_one_chain(factories[1], actors)
    finally:
        for engine in engines:
            await engine.dispose()


# One writer process: its own engine, some transactions one after another (argv: url, action id, name, count).
WRITER = """
import asyncio, sys
from storage.engine import create_engine
from storage.unit_of_work import UnitOfWorkFactory
from tests.integration.test_audit_chain import vote_and_reword

async def main(url: str, action_id: int, name: str, count: int) -> None:
    engine = create_engine(url)
    try:
        units = UnitOfWorkFactory.for_engine(engine)
        for number in range(count):
            await vote_and_reword(units, action_id, f"{name}{number}", f"by {name} {number % 2}")
    finally:
        await engine.dispose()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
"""


async def test_two_processes_appending_at_once_make_one_chain(database_url: str) -> None:
    """Two processes (two replicas) appending to one chain at once: on SQLite they take turns at BEGIN, on
    PostgreSQL they overlap."""
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        units = UnitOfWorkFactory.for_engine(engine)
        action_id = await shared_action(units)
        writers = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", WRITER, database_url, str(action_id), name, "25"
            )
            for name in ("A", "B")
        ]
        assert [await writer.wait() for writer in writers] == [0, 0]

        await assert_one_chain(units, {f"{name}{number}" for name in ("A", "B") for number in range(25)})
    finally:
        await engine.dispose()


@pytest.mark.empty_database
async def test_a_store_upgraded_from_before_the_audit_verifies(database_url: str, raw: AsyncEngine) -> None:
    """Records written before the chain existed (here by SQL, at the schema before it) get one first entry
    each when it is added, and an allowed refund's execution is covered from then on."""

    def to_0007(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "0007")

    async with raw.begin() as connection:
        await connection.run_sync(to_0007)
    refund = ShopRefund(order_id=1002, amount=40.0, reason="strap tore")
    statements = [
        'INSERT INTO intent (id, source, team_id, channel, "user", text, status, created_at) '
        "VALUES (1, 'console', '', 'C0SHOP', 'U0ALICE', 'refund', 'dispatched', CURRENT_TIMESTAMP)",
        "INSERT INTO run (id, intent_id, agent, rationale, status, memories_used, created_at, updated_at) "
        "VALUES (1, 1, 'returns', '', 'completed', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO proposed_action (id, run_id, name, params, rationale, status, created_at) "
        "VALUES (1, 1, 'shop.refund', :params, '', 'executed', CURRENT_TIMESTAMP)",
        "INSERT INTO decision (id, action_id, kind, verdict, rule_id, reason, justification, actor, created_at) "
        "VALUES (1, 1, 'policy', 'allow', 'small-refunds-are-fine', '', '', 'policy', CURRENT_TIMESTAMP)",
        "INSERT INTO capability (id, action_id, action_name, params_hash, policy_hash, granted_by, expires_at, "
        "spent_at, created_at) VALUES (1, 1, 'shop.refund', :params_hash, '', 'policy', CURRENT_TIMESTAMP, "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO execution (id, action_id, idempotency_key, status, result, started_at) "
        "VALUES (1, 1, 'k1', 'succeeded', '{}', CURRENT_TIMESTAMP)",
    ]
    params = {"params": json.dumps(refund.model_dump(mode="json")), "params_hash": params_hash(refund)}
    async with raw.begin() as connection:
        for statement in statements:
            given = {k: v for k, v in params.items() if f":{k}" in statement}
            await connection.execute(text(statement), given)
    await upgrade_to_head(raw)

    report = await verify(
        UnitOfWorkFactory.for_engine(raw), ParamsHasher(installed_action_models()), roles_of_policy
    )

    assert report.problems == [] and report.executions == 1
    assert report.entries == report.records == 4  # the action, the decision, the capability, the execution


PERMISSIVE = """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: everything-is-fine-here
    when: "true"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


async def test_undo_steps_of_a_failed_run_are_covered_as_compensation(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    """Posts published, a later step fails, the bot unpublishes them: the undo steps ran on capabilities the
    compensation minted, for steps that had run, and verify counts them covered."""
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PERMISSIVE,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        for title in ("Spring lookbook", "Summer lookbook"):
            await aios.registry.execute(CmsCreateDraft(title=title), f"seed-{title}")
        anthropic_api.script(
            Reply(
                "Publishing the series.",
                (
                    ToolUse("cms_publish", {"slug": "spring-lookbook"}),
                    ToolUse("cms_publish", {"slug": "summer-lookbook"}),
                    # A second draft under a slug taken: the CMS refuses it only when it runs.
                    ToolUse("cms_create_draft", {"title": "Spring lookbook", "slug": "spring-lookbook"}),
                ),
            )
        )
        await ask(aios, "publish the lookbook series")

        report = await audit(aios)

        assert report.problems == [] and report.executions == 5
    finally:
        await aios.close()


async def test_a_budget_grant_is_covered_by_its_approval(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    budget = """budgets:
  - id: returns-daily
    scope: agent
    match: returns
    period: day
    limit_usd: 0.005
    approvers: [manager]
    grant_usd: 1.0
"""
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        budget,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        anthropic_api.script(
            Reply(
                "Refund it.",
                (ToolUse("shop_refund", {"order_id": 1003, "amount": 129.0, "reason": "cracked"}),),
            )
        )
        await ask(aios, "refund order 1003, the blender arrived cracked")
        async with aios.units() as uow:
            run = (await uow.session.exec(select(Run))).one()
        assert run.id is not None and run.status == "over_budget"
        await aios.process(RequestBudget(run.id, REQUESTER, CHANNEL))
        async with aios.units() as uow:
            approval = (await uow.session.exec(select(Approval))).one()
        assert approval.id is not None
        await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))

        report = await audit(aios)

        async with aios.units() as uow:
            grant = await uow.get(ProposedAction, approval.action_id)
        assert grant is not None and (grant.name, grant.status) == ("budget.grant", "executed")
        assert report.problems == [] and report.executions == 1
    finally:
        await aios.close()
