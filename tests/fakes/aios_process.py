"""The real `aios serve` as a subprocess, for the e2e tests and the benchmarks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.slack_api import TOKEN
from tests.fakes.slack_payloads import SIGNING_SECRET

AIOS = str(Path(sys.executable).with_name("aios"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BOT_SETTINGS = ("AIOS_", "SLACK_", "ANTHROPIC_", "STRIPE_", "SHOPIFY_", "WORDPRESS_", "WEAVIATE_")


def aios_env(database_url: str, slack_api_url: str) -> dict[str, str]:
    """This process's environment without any of the bot's settings (a developer's real Stripe key must not
    reach a test), plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(BOT_SETTINGS) and k != "DATABASE_URL"}
    env.update(
        {
            "AIOS_DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack_api_url,
            "AIOS_MEMORY_EMBEDDINGS": "off",  # the embeddings extra is tested on its own where it is installed
        }
    )
    return env


@dataclass
class ServeProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def running_aios_serve(
    env: dict[str, str], timeout: float = 30, *, work: bool = True
) -> Iterator[ServeProcess]:
    """Start `aios serve` on a loopback port the system picks (``--port 0``), wait until it says where it serves
    and /healthz answers there, stop it (SIGTERM) afterwards; ``work=False`` starts `aios serve --no-work`,
    which leaves the work to `aios worker`.

    The address is read from the server's own "serving" log line, so no other process can have taken it in
    between. Its log goes to a file, not a pipe: a pipe nobody reads would stall the server once full.
    """
    with tempfile.TemporaryDirectory(prefix="aios-serve-") as logdir:
        log = Path(logdir) / "serve.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [AIOS, "serve", "--host", "127.0.0.1", "--port", "0", *([] if work else ["--no-work"])],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        try:
            serve = ServeProcess(_served_url(process, log, timeout), process, log)
            _check_healthy(serve)
            yield serve
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def served_url(log: str) -> str | None:
    """The URL in a server's "serving" log line (JSON lines), once it has written one."""
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "serving":
            return str(entry["url"])
    return None


def _served_url(process: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = served_url(log.read_text())
        if url is not None:
            return url
        if process.poll() is not None:
            raise AssertionError(f"aios serve exited with {process.returncode}: {log.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"aios serve did not say where it serves: {log.read_text()}")


def _check_healthy(serve: ServeProcess) -> None:
    try:
        with urllib.request.urlopen(f"{serve.url}/healthz", timeout=5) as response:
            healthy = response.status == 200
    except OSError as exc:
        raise AssertionError(
            f"aios serve at {serve.url} did not answer /healthz ({exc}): {serve.log.read_text()}"
        ) from exc
    assert healthy, f"aios serve at {serve.url} is not healthy: {serve.log.read_text()}"


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def running_aios_worker(env: dict[str, str], timeout: float = 30) -> Iterator[WorkerProcess]:
    """Start `aios worker`, wait until it logs that it works, stop it (SIGTERM) afterwards."""
    with tempfile.TemporaryDirectory(prefix="aios-worker-") as logdir:
        log = Path(logdir) / "worker.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen([AIOS, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        worker = WorkerProcess(process, log)
        try:
            deadline = time.monotonic() + timeout
            while '"event": "working"' not in log.read_text():
                if process.poll() is not None:
                    raise AssertionError(f"aios worker exited with {process.returncode}: {log.read_text()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"aios worker did not start: {log.read_text()}")
                time.sleep(0.1)
            yield worker
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
