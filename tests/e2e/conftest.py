"""The real `aios serve` process, driven over HTTP with signed Slack payloads, talking to the fake Slack API."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POSTGRES_REQUIRED, POSTGRES_URL, throwaway_postgres
from tests.fakes.aios_process import AIOS, aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi


@dataclass
class Server:
    url: str
    env: dict[str, str]
    slack: FakeSlackApi
    log: Path | None = None  # what `aios serve` writes to stderr

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AIOS, *args], env=self.env, capture_output=True, text=True, timeout=60)

    def sandbox(self) -> dict[str, Any]:
        result = self.cli("sandbox", "show", "--json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for `aios serve` processes to share, dropped afterwards."""
    if not POSTGRES_URL:
        if POSTGRES_REQUIRED:
            pytest.fail("AIOS_REQUIRE_POSTGRES=1 but AIOS_TEST_POSTGRES_URL is not set")
        pytest.skip("this test needs PostgreSQL: set AIOS_TEST_POSTGRES_URL")
    database = throwaway_postgres(POSTGRES_URL)
    url = asyncio.run(database.__aenter__())
    yield url
    asyncio.run(database.__aexit__(None, None, None))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = tmp_path_factory.mktemp("serve") / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        with running_aios_serve(env) as serve:
            yield Server(serve.url, env, slack, serve.log)
