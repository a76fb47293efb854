"""What-if replay over many recorded decisions: `aios replay --since 7d --policy FILE --json` on 100,000 policy
decisions (SQLite by default, PostgreSQL with --postgres URL).

    .venv/bin/python -m bench.replay [--decisions 100000] [--postgres postgresql+asyncpg://…]

The records are written in bulk (two refunds per run, a tenth of them without recorded facts, as decisions from
before facts were kept look); the timed part is the installed `aios replay` command, start-up included, and the
same replay in this process without the start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bot.replay import Scope, build_report
from policies.engine import DEFAULT_POLICY, Policy
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.records import Approval, Decision, Intent, PolicyVersion, ProposedAction, Run, utcnow
from storage.unit_of_work import UnitOfWorkFactory

CANDIDATE = """
version: 1
roles:
  manager: [U0MANAGER]
  finance: [U0FIN]
rules:
  - id: refunds-over-400-are-denied
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 400.0
    verdict: deny
  - id: refunds-over-50-need-a-manager
    when: action.name == "shop.refund" && (run.totals["shop.refund"] > 50.0 || order.refunded > 0.0)
    verdict: require_approval
    approvers: [manager]
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""
CHUNK = 5000
AIOS = str(Path(sys.executable).with_name("aios"))


async def record(url: str, decisions: int) -> Policy:
    """Runs of two refunds each, judged by the packaged policy, written in bulk."""
    engine = create_engine(url)
    await upgrade_to_head(engine)
    recorded_under = Policy.from_file(DEFAULT_POLICY)
    rng = random.Random(7)
    now = utcnow()
    runs = decisions // 2
    async with engine.begin() as connection:
        await connection.execute(
            insert(PolicyVersion),
            [{"hash": recorded_under.hash, "text": recorded_under.text, "first_seen_at": now}],
        )
        for start in range(1, runs + 1, CHUNK):
            ids = range(start, min(start + CHUNK, runs + 1))
            intents: list[dict[str, Any]] = []
            run_rows: list[dict[str, Any]] = []
            actions: list[dict[str, Any]] = []
            decision_rows: list[dict[str, Any]] = []
            approvals: list[dict[str, Any]] = []
            for run_id in ids:
                at = now - timedelta(minutes=rng.randrange(0, 6 * 24 * 60))
                user = f"U0USER{run_id % 50}"
                intents.append(
                    {
                        "id": run_id,
                        "source": "mention",
                        "channel": "C0SHOP",
                        "user": user,
                        "text": "refunds",
                        "status": "dispatched",
                        "team_id": "T0",
                        "created_at": at,
                    }
                )
                run_rows.append(
                    {
                        "id": run_id,
                        "intent_id": run_id,
                        "agent": "returns",
                        "rationale": "",
                        "status": "completed",
                        "memories_used": [],
                        "created_at": at,
                        "updated_at": at,
                    }
                )
                totals = 0.0
                for n in (0, 1):
                    action_id = run_id * 2 - 1 + n
                    amount = float(rng.choice((10, 25, 40, 60, 90, 150, 300)))
                    totals += amount
                    params = {"order_id": 1001 + rng.randrange(5), "amount": amount, "reason": "broken"}
                    actions.append(
                        {
                            "id": action_id,
                            "run_id": run_id,
                            "name": "shop.refund",
                            "params": params,
                            "rationale": "",
                            "status": "executed",
                            "created_at": at,
                        }
                    )
                    verdict = recorded_under.evaluate("shop.refund", params, user, {"shop.refund": totals})
                    facts = (
                        None
                        if run_id % 10 == 0
                        else {
                            "requester": user,
                            "roles": [],
                            "groups": [],
                            "run_totals": {"shop.refund": totals},
                            "order_refunded": 0.0,
                            "requester_today": {},
                            "action_facts": None,
                        }
                    )
                    decision_rows.append(
                        {
                            "id": action_id,
                            "action_id": action_id,
                            "kind": "policy",
                            "verdict": verdict.verdict,
                            "rule_id": verdict.rule_id,
                            "policy_hash": verdict.policy_hash,
                            "reason": verdict.explanation,
                            "justification": "",
                            "actor": "policy",
                            "created_at": at,
                            "facts": facts,
                        }
                    )
                    if verdict.verdict == "require_approval":
                        approvals.append(
                            {
                                "id": action_id,
                                "action_id": action_id,
                                "decision_id": action_id,
                                "status": "approved",
                                "approver_roles": list(verdict.approver_roles),
                                "forbid_self_approval": True,
                                "requester": user,
                                "channel": "C0SHOP",
                                "quorum": 1,
                                "escalate_to": [],
                                "created_at": at,
                            }
                        )
            for model, rows in (
                (Intent, intents),
                (Run, run_rows),
                (ProposedAction, actions),
                (Decision, decision_rows),
                (Approval, approvals),
            ):
                if rows:
                    await connection.execute(insert(model), rows)  # type: ignore[arg-type]
        if engine.dialect.name == "postgresql":  # ids were given: move the sequences past them
            for table in ("intent", "run", "proposed_action", "decision", "approval"):
                await connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
    await engine.dispose()
    return recorded_under


async def replay_in_process(url: str, candidate: Policy) -> tuple[float, dict[str, Any]]:
    engine = create_engine(url)
    units = UnitOfWorkFactory.for_engine(engine)
    started = time.perf_counter()
    report = await build_report(units, candidate, Scope(since=utcnow() - timedelta(days=7)), keep=1000)
    seconds = time.perf_counter() - started
    await engine.dispose()
    return seconds, report.summary.as_json()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--postgres", help="an empty PostgreSQL database URL (its tables are created)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.postgres or f"sqlite+aiosqlite:///{folder}/replay.db"
        started = time.perf_counter()
        asyncio.run(record(url, args.decisions))
        print(f"recorded {args.decisions:,} decisions in {time.perf_counter() - started:.1f} s")
        candidate_file = Path(folder) / "candidate.yaml"
        candidate_file.write_text(CANDIDATE)

        env = {**os.environ, "AIOS_DATABASE_URL": url}
        started = time.perf_counter()
        result = subprocess.run(
            [AIOS, "replay", "--since", "7d", "--policy", str(candidate_file), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"aios replay failed: {result.stderr.strip()}")
        summary = json.loads(result.stdout)["summary"]
        print(
            f"aios replay --since 7d --json: {summary['actions']:,} decisions in {seconds:.1f} s "
            f"({summary['actions'] / seconds:,.0f} actions/s, start-up included); {summary['changed']:,} would "
            f"change in {summary['runs_affected']:,} runs; {summary['facts_partly_reconstructed']:,} from "
            "rebuilt facts"
        )
        for line in (g for g in summary["groups"]):
            print(
                f"  {line['count']:,} × {line['action']} ${line['money']:,.2f}: {line['change']} → {line['verdict']}"
            )

        seconds, in_process = asyncio.run(replay_in_process(url, Policy.from_text(CANDIDATE, "candidate")))
        print(f"in process: {in_process['actions'] / seconds:,.0f} actions/s ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
