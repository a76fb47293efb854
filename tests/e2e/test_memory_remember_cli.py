"""`aios memory remember` keys a note as `/aios remember` does: the key given, else the one entity it names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fakes.aios_process import AIOS, aios_env


def aios(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOS, *args], env=env, capture_output=True, text=True, timeout=120)


def test_remember_infers_the_key_and_refuses_bad_kinds_and_keys(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/m.db", "http://127.0.0.1:9/api/")
    inferred = aios("memory", "remember", "order #1002: customer wants store credit", env=env)
    assert inferred.stdout.strip() == "remembered as M-1 under order:1002"
    given = aios("memory", "remember", "Ana prefers email", "--key", "customer:Ana@Example.com", env=env)
    assert given.stdout.strip() == "remembered as M-2"
    bad_kind = aios("memory", "remember", "x", "--kind", "Brand Voice", env=env)
    assert bad_kind.returncode == 2 and "'Brand Voice' is not a kind" in bad_kind.stderr
    bad_key = aios("memory", "remember", "x", "--key", "order:soon", env=env)
    assert bad_key.returncode == 2 and "'order:soon' is not a key" in bad_key.stderr
    assert "Traceback" not in bad_kind.stderr + bad_key.stderr
    found = json.loads(aios("memory", "search", "order 1002 email Ana", "--json", env=env).stdout)
    assert [(m["text"], m["key"], m["tier"]) for m in found] == [
        ("order #1002: customer wants store credit", "order:1002", "exact"),
        ("Ana prefers email", "customer:ana@example.com", "keyword"),
    ]
