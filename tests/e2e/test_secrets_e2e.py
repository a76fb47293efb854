"""End to end: `aios serve` with secrets set, a real connector whose server echoes the credential it was sent,
and a Slack API that echoes one back in an error: no log line, stored row or Slack message holds a secret."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.e2e.conftest import Server
from tests.e2e.test_serve import REQUESTER, ephemerals_for, send
from tests.fakes.aios_process import AIOS, aios_env, running_aios_serve
from tests.fakes.loopback import LoopbackServer
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import slash_command

SHOP_KEY = "shop-live-key-7Hq2xP9wLm4Zt"


class EchoingShop(LoopbackServer):
    """A shop API that looks up orders, and refuses refunds by repeating the Authorization header it got."""

    def __init__(self) -> None:
        super().__init__("echoing-shop")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/orders/{id}", self._order)
        app.router.add_post("/refunds", self._refund)
        app.router.add_get("/refunds", self._find)

    async def _order(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": int(request.match_info["id"]),
                "customer_name": "Ana Lima",
                "customer_email": "ana@example.com",
                "item": "Countertop blender",
                "total": 129.0,
            }
        )

    async def _refund(self, request: web.Request) -> web.Response:
        sent = request.headers.get("Authorization", "")
        return web.json_response({"error": {"message": f"key not valid for refunds: {sent}"}}, status=403)

    async def _find(self, request: web.Request) -> web.Response:
        return web.json_response({"data": []})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with FakeSlackApi() as slack, EchoingShop() as shop:
        env = aios_env(f"sqlite+aiosqlite:///{tmp_path / 'aios.db'}", slack.url)
        env.update({"AIOS_SHOP_API_URL": shop.url, "AIOS_SHOP_API_KEY": SHOP_KEY})
        with running_aios_serve(env) as serve:
            yield Server(serve.url, env, slack, serve.log)


def stored_rows(env: dict[str, str]) -> str:
    path = env["AIOS_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"'))


async def test_a_secret_echoed_by_a_connectors_server_or_by_slack_is_nowhere(server: Server) -> None:
    slack = server.slack
    await send(server, *slash_command("refund order 1003 $40 arrived broken", user=REQUESTER))
    failed = slack.wait_for(
        lambda s: [
            c for c in s.calls_to("chat.postMessage") if "key not valid for refunds" in c.params["text"]
        ]
    )[0]
    assert "Bearer [REDACTED:AIOS_SHOP_API_KEY]" in failed.params["text"]

    # Slack refuses the explanation with an error that repeats the key: the bot logs that it was not delivered,
    # with Slack's answer (the payload's response URL is not Slack's, so there is no other way to try).
    slack.fail_next("chat.postEphemeral", f"invalid_arguments: {SHOP_KEY}")
    await send(server, *slash_command("why A-1", user=REQUESTER))
    assert server.log is not None
    log = server.log
    line = slack.wait_for(
        lambda s: [line for line in log.read_text().splitlines() if "answer_not_delivered" in line]
    )[0]
    assert "invalid_arguments: [REDACTED:AIOS_SHOP_API_KEY]" in json.loads(line)["error"]
    await send(server, *slash_command("why A-1", user=REQUESTER))
    explanation = slack.wait_for(lambda s: ephemerals_for(s, REQUESTER))[0]
    assert "key not valid for refunds: Bearer [REDACTED:AIOS_SHOP_API_KEY]" in explanation

    said = "\n".join(json.dumps(c.params) for c in slack.calls)
    stored = stored_rows(server.env)
    logged = log.read_text()
    assert "[REDACTED:AIOS_SHOP_API_KEY]" in stored
    for text in (said, stored, logged):
        assert SHOP_KEY not in text


class EchoingWordPress(LoopbackServer):
    """A WordPress REST API that refuses every login by repeating the Authorization header it got."""

    def __init__(self) -> None:
        super().__init__("echoing-wordpress")

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{path:.*}", self._refuse)

    async def _refuse(self, request: web.Request) -> web.Response:
        sent = request.headers.get("Authorization", "")
        return web.json_response({"code": "invalid_username", "message": f"not accepted: {sent}"}, status=401)


def test_a_health_line_that_echoes_the_basic_auth_header_shows_no_password(tmp_path: Path) -> None:
    password = "abcd EFGH ijkl MNOP qrst UVWX"
    with EchoingWordPress() as wordpress:
        env = aios_env(f"sqlite+aiosqlite:///{tmp_path / 'aios.db'}", "http://127.0.0.1:9/api/")
        env.update(
            {
                "WORDPRESS_URL": f"http://127.0.0.1:{wordpress.port}",
                "WORDPRESS_USER": "editor",
                "WORDPRESS_APP_PASSWORD": password,
                "COLUMNS": "1000",  # one table row a line
            }
        )
        result = subprocess.run([AIOS, "connectors"], env=env, capture_output=True, text=True, timeout=60)

    shown = result.stdout + result.stderr
    assert result.returncode == 1 and "not accepted: Basic [REDACTED:WORDPRESS_APP_PASSWORD]" in shown
    basic = base64.b64encode(f"editor:{password}".encode()).decode()
    for form in (password, password.replace(" ", ""), basic):
        assert form not in shown
