"""The real `aios serve` as a subprocess, for the e2e tests and the benchmarks."""

from __future__ import annotations

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


PORT_TAKEN = "cannot listen on"
PORT_ATTEMPTS = 5


@contextmanager
def running_aios_serve(env: dict[str, str], timeout: float = 30) -> Iterator[ServeProcess]:
    """Start `aios serve` on a free loopback port, wait for /healthz, stop it (SIGTERM) afterwards.

    A port found free can be taken by another test process before the server binds it; the server then says
    so and exits, and it is started again on another port. Its log goes to a file, not a pipe: a pipe nobody
    reads would stall the server once full.
    """
    with tempfile.TemporaryDirectory(prefix="aios-serve-") as logdir:
        log = Path(logdir) / "serve.log"
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            with log.open("wb") as log_file:
                process = subprocess.Popen(
                    [AIOS, "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log_file,
                )
            serve = ServeProcess(f"http://127.0.0.1:{port}", process, log)
            try:
                _wait_until_healthy(serve, timeout)
            except AssertionError:
                process.kill()
                process.wait()
                if PORT_TAKEN in log.read_text() and attempt + 1 < PORT_ATTEMPTS:
                    continue
                raise
            break
        try:
            yield serve
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_until_healthy(serve: ServeProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve.process.poll() is not None:
            raise AssertionError(
                f"aios serve exited with {serve.process.returncode}: {serve.log.read_text()}"
            )
        try:
            with urllib.request.urlopen(f"{serve.url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"aios serve did not become healthy: {serve.log.read_text()}")
