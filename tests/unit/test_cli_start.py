"""What `aios` loads before it does anything: the light commands must not import the heavy parts of the bot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from pydantic import ValidationError
from sqlmodel import SQLModel

from storage.migrate import alembic_config, newest_revision
from storage.records import Record, SandboxOrder

HEAVY = (
    "anthropic",
    "weaviate",
    "cel",
    "slack_bolt",
    "slack_sdk",
    "aiohttp",
    "apscheduler",
    "prompt_toolkit",
)

# Beyond HEAVY, what each light command has no use for on a SQLite store already at the newest schema:
# Alembic, the PostgreSQL dialect, structlog (nothing they run logs through it), the connectors' action models
# and the rest of the bot. `aios --help` runs nothing at all.
NOT_FOR_THE_STORE = (
    "alembic",
    "sqlalchemy.dialects.postgresql",
    "structlog",
    "connectors.actions",
    "connectors.registry",
    "bot.bootstrap",
    "policies",
)
UNNEEDED: dict[tuple[str, ...], tuple[str, ...]] = {
    ("--help",): ("asyncio", "sqlalchemy", "pydantic", "structlog", "bot.settings"),
    ("why", "D-1"): NOT_FOR_THE_STORE,
    ("sandbox", "show", "--json"): NOT_FOR_THE_STORE,
    # The memory store logs its searches through structlog, and its module imports both SQL dialects.
    ("memory", "search", "ana"): tuple(
        m for m in NOT_FOR_THE_STORE if m not in ("structlog", "sqlalchemy.dialects.postgresql")
    ),
    ("cost",): NOT_FOR_THE_STORE,
}

# Runs one command in this interpreter and prints which of the given modules (or their submodules) it imported.
PROBE = """
import contextlib, io, json, sys
from bot.cli import main
unwanted = json.loads(sys.argv[2])
sys.argv = ["aios", *json.loads(sys.argv[1])]
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in unwanted if any(n == m or n.startswith(m + ".") for n in sys.modules))))
"""


def test_importing_the_cli_imports_nothing_heavy() -> None:
    code = f"import sys, bot.cli; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("args", list(UNNEEDED), ids=lambda args: " ".join(args))
def test_light_commands_import_nothing_they_do_not_need(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = {
        **_plain_environment(),
        "AIOS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/start.db",
        "AIOS_MEMORY_EMBEDDINGS": "off",
    }
    assert _imported(("db", "upgrade"), (), env) == []
    assert _imported(args, (*HEAVY, *UNNEEDED[args]), env) == []


def _imported(args: tuple[str, ...], modules: tuple[str, ...], env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(modules)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    imported: list[str] = json.loads(result.stdout)
    return imported


def test_every_table_builds_its_validator_on_first_use_not_at_import() -> None:
    deferred = {model.__table__.name for model in Record.__subclasses__()}  # type: ignore[attr-defined]
    assert set(SQLModel.metadata.tables) - deferred == set(), "tables must derive from storage.records.Record"


def test_a_table_built_on_first_use_validates_and_dumps() -> None:
    order = SandboxOrder.model_validate(
        {
            "id": "7",
            "customer_name": "Ana",
            "customer_email": "ana@example.com",
            "item": "Mug",
            "total": "12.5",
        }
    )
    assert order.model_dump(mode="json") == {
        "id": 7,
        "customer_name": "Ana",
        "customer_email": "ana@example.com",
        "item": "Mug",
        "total": 12.5,
        "refunded": 0.0,
        "status": "delivered",
    }
    with pytest.raises(ValidationError, match="total"):
        SandboxOrder.model_validate(
            {"id": 8, "customer_name": "A", "customer_email": "a", "item": "M", "total": "x"}
        )


def test_the_newest_revision_read_from_file_names_is_alembics_head() -> None:
    assert newest_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def _plain_environment() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIOS_", "SLACK_", "ANTHROPIC_", "WEAVIATE_"))
    }


def test_a_long_running_command_sets_what_it_started_with_aside_from_the_collector() -> None:
    """`aios serve` and `aios worker` settle their heap once started: a full collection then walks only what was
    made since (walking the whole heap took tens of milliseconds, every request waiting meanwhile)."""
    code = (
        "import gc, bot.cli, bot.bootstrap, bot.web\n"
        "bot.cli._keep_running()\n"
        "bot.cli.settle_heap()\n"
        "print(gc.get_freeze_count())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(result.stdout) > 50_000
