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

# Runs one command in this interpreter and prints which heavy modules it imported.
PROBE = """
import contextlib, io, json, sys
from bot.cli import main
heavy = set(json.loads(sys.argv[2]))
sys.argv = ["aios", *json.loads(sys.argv[1])]
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & heavy)))
"""


def test_importing_the_cli_imports_nothing_heavy() -> None:
    code = f"import sys, bot.cli; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [("--help",), ("why", "D-1"), ("sandbox", "show", "--json"), ("memory", "search", "ana"), ("cost",)],
    ids=lambda args: " ".join(args),
)
def test_light_commands_import_nothing_heavy(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = {"AIOS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/start.db", "AIOS_MEMORY_EMBEDDINGS": "off"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env={**_plain_environment(), **env},
    )
    assert json.loads(result.stdout) == []


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
