"""A local server that speaks the Slack Web API, for the bot to reach through ``SLACK_API_URL``.

It runs on its own thread and event loop, so both sync and async tests (and bot subprocesses) can use it.
It records every call, answers like Slack does (``ok``, ``ts``, errors) and keeps the messages it was sent.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from tests.fakes.loopback import LoopbackServer, wait_until

BOT_USER_ID = "UAIOSBOT"
BOT_ID = "B0AIOS"
MAX_BLOCKS = 50  # per message
MAX_VIEW_BLOCKS = 100  # per modal or Home tab
MAX_VIEW_TITLE = 24
MAX_TEXT_OBJECT = 3000  # any text object in a block
MAX_MESSAGE_TEXT = 40_000
TOKEN = "xoxb-test-token"


@dataclass(frozen=True)
class ApiCall:
    method: str
    params: dict[str, Any]
    response: dict[str, Any]


class FakeSlackApi(LoopbackServer):
    def __init__(self, *, token: str = TOKEN) -> None:
        super().__init__("fake-slack-api")
        self.token = token
        self.calls: list[ApiCall] = []
        self.groups: dict[str, list[str]] = {}
        self._failures: dict[str, list[str]] = {}
        self.human_messages: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._ts = itertools.count(1)
        self._socket_mode: tuple[str, Callable[[], str]] | None = None
        self.views: dict[str, dict[str, Any]] = {}  # modals opened (and updated), by view id
        self.homes: dict[str, dict[str, Any]] = {}  # each user's App Home as last published
        self._triggers_used: set[str] = set()
        self._view_ids = itertools.count(1)

    def serve_socket_mode(self, app_token: str, issue_url: Callable[[], str]) -> None:
        """Answer apps.connections.open for ``app_token`` with the WebSocket URLs ``issue_url`` makes."""
        self._socket_mode = (app_token, issue_url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def response_url(self) -> str:
        """Where a slash command's payload says its answers may follow (Slack's hooks.slack.com/commands/…)."""
        return f"http://127.0.0.1:{self.port}/commands/T0FAKE/1/fake-hook"

    @property
    def actions_url(self) -> str:
        """Where a click's or a shortcut's payload says its answers may follow (hooks.slack.com/actions/…)."""
        return f"http://127.0.0.1:{self.port}/actions/T0FAKE/2/fake-hook"

    def add_human_message(self, channel: str, thread_ts: str, ts: str, user: str, text: str) -> None:
        """A person's message in a thread, as conversations.replies will return it."""
        with self._lock:
            self.human_messages.setdefault((channel, thread_ts), []).append(
                {"type": "message", "ts": ts, "user": user, "text": text, "thread_ts": thread_ts}
            )

    def add_app_message(self, channel: str, thread_ts: str, ts: str, bot_id: str, text: str) -> None:
        """Another app's message in a thread (its own bot id and bot user), as conversations.replies returns it."""
        with self._lock:
            self.human_messages.setdefault((channel, thread_ts), []).append(
                {
                    "type": "message",
                    "subtype": "bot_message",
                    "ts": ts,
                    "bot_id": bot_id,
                    "user": f"U{bot_id}",
                    "text": text,
                    "thread_ts": thread_ts,
                }
            )

    def fail_next(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``."""
        with self._lock:
            self._failures.setdefault(method, []).extend([error] * times)

    # --- what tests ask -------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[ApiCall]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, predicate: Callable[[FakeSlackApi], Any], timeout: float = 15.0) -> Any:
        return wait_until(
            lambda: predicate(self),
            timeout,
            lambda: f"the fake Slack API did not see what was expected within {timeout}s: {self.calls}",
        )

    def approval_requests(self) -> list[ApiCall]:
        """chat.postMessage calls whose blocks carry the Approve button."""
        return [c for c in self.calls_to("chat.postMessage") if _has_action(c.params, "aios_approve")]

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/commands/{hook:.+}", self._respond)
        app.router.add_post("/actions/{hook:.+}", self._respond)

    # --- the server -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        with self._lock:
            failures = self._failures.get(method)
            error = failures.pop(0) if failures else None
        if method == "apps.connections.open":
            authorization = request.headers.get("Authorization", "")
            answer: dict[str, Any] = (
                self._open_connection(authorization) if error is None else {"ok": False, "error": error}
            )
        elif (
            request.headers.get("Authorization") != f"Bearer {self.token}"
            and params.get("token") != self.token
        ):
            answer = {"ok": False, "error": "invalid_auth"}
        elif error is not None:
            answer = {"ok": False, "error": error}
        else:
            answer = self._answer(method, params)
        with self._lock:
            self.calls.append(ApiCall(method, params, answer))
        return web.json_response(answer)

    async def _respond(self, request: web.Request) -> web.Response:
        """A message posted to a response_url, kept as a call of the method ``response_url``: Slack answers a
        JSON body with a plain ``ok``, and anything else (blocks it refuses too) with a 400 (no token: the URL is
        the credential)."""
        try:
            params = await request.json()
        except ValueError:
            params = None
        ok = (
            isinstance(params, dict)
            and bool(params.get("text") or params.get("blocks"))
            and _refusal(params) is None
        )
        with self._lock:
            failures = self._failures.get("response_url")  # fail_next("response_url", "expired_url")
            error = failures.pop(0) if failures else None
            self.calls.append(
                ApiCall("response_url", params if isinstance(params, dict) else {}, {"ok": ok and not error})
            )
        if error is not None:
            return web.Response(status=404, text=error)
        return web.Response(text="ok") if ok else web.Response(status=400, text="invalid_payload")

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://fake.slack.test/",
                "team": "Fake",
                "user": "aios",
                "team_id": "T0FAKE",
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
            }
        if method in ("chat.postMessage", "chat.update") and (refused := _refusal(params)):
            return {"ok": False, "error": refused}
        if method == "chat.postMessage":
            if not params.get("channel"):
                return {"ok": False, "error": "channel_not_found"}
            ts = f"1800000000.{next(self._ts):06d}"
            return {
                "ok": True,
                "channel": params["channel"],
                "ts": ts,
                "message": {"text": params.get("text"), "ts": ts, "thread_ts": params.get("thread_ts")},
            }
        if method == "chat.update":
            return {
                "ok": True,
                "channel": params.get("channel"),
                "ts": params.get("ts"),
                "text": params.get("text"),
            }
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1800000000.{next(self._ts):06d}"}
        if method == "conversations.replies":
            return {
                "ok": True,
                "messages": self._replies(str(params.get("channel")), str(params.get("ts"))),
                "has_more": False,
            }
        if method in ("views.open", "views.update", "views.publish"):
            return self._view_call(method, params)
        if method == "usergroups.users.list":
            users = self.groups.get(str(params.get("usergroup")))
            return (
                {"ok": True, "users": users}
                if users is not None
                else {"ok": False, "error": "no_such_subteam"}
            )
        return {"ok": False, "error": "unknown_method"}

    def _view_call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """views.open (a trigger id once), views.update (by view id) and views.publish (a user's Home tab)."""
        view = params.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict) or (refused := _view_refusal(view)):
            return {"ok": False, "error": "invalid_arguments" if not isinstance(view, dict) else refused}
        with self._lock:
            if method == "views.open":
                trigger = str(params.get("trigger_id") or "")
                if not trigger:
                    return {"ok": False, "error": "invalid_arguments"}
                if trigger in self._triggers_used:
                    return {"ok": False, "error": "exchanged_trigger_id"}
                self._triggers_used.add(trigger)
                view_id = f"V{next(self._view_ids):08d}"
            elif method == "views.update":
                view_id = str(params.get("view_id") or "")
                if view_id not in self.views:
                    return {"ok": False, "error": "not_found"}
            else:
                user = str(params.get("user_id") or "")
                if not user or view.get("type") != "home":
                    return {"ok": False, "error": "invalid_arguments"}
                self.homes[user] = view
                return {"ok": True, "view": {**view, "id": f"VHOME{user}"}}
            self.views[view_id] = view
        return {"ok": True, "view": {**view, "id": view_id}}

    def _open_connection(self, authorization: str) -> dict[str, Any]:
        """Socket Mode's WebSocket URL; only the app-level token (xapp-…) may ask for one."""
        if authorization == f"Bearer {self.token}":
            return {"ok": False, "error": "not_allowed_token_type"}
        if self._socket_mode is None or authorization != f"Bearer {self._socket_mode[0]}":
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": self._socket_mode[1]()}

    def _replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """People's messages added by the test, and what the bot posted in the thread (numbered as answered)."""
        with self._lock:
            messages = list(self.human_messages.get((channel, thread_ts), []))
            posts = [c for c in self.calls if c.method == "chat.postMessage" and c.response.get("ok")]
        for call in posts:
            ts = call.response["ts"]
            if call.params.get("channel") == channel and thread_ts in (ts, call.params.get("thread_ts")):
                messages.append(
                    {
                        "type": "message",
                        "ts": ts,
                        "bot_id": BOT_ID,
                        "text": call.params.get("text", ""),
                        "thread_ts": thread_ts,
                    }
                )
        return sorted(messages, key=lambda m: float(m["ts"]))


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        params.update(await request.json())
    elif request.can_read_body:
        params.update(dict(await request.post()))
    for key in ("blocks", "attachments"):
        if isinstance(params.get(key), str):
            params[key] = json.loads(params[key])
    return params


def _refusal(params: dict[str, Any]) -> str | None:
    """What Slack refuses in a message: too long a text, or blocks past Block Kit's limits (slack_sdk knows
    most of them; a text object's 3,000 characters and 50 blocks a message are checked here)."""
    if len(str(params.get("text") or "")) > MAX_MESSAGE_TEXT:
        return "msg_too_long"
    blocks = params.get("blocks") or []
    if len(blocks) > MAX_BLOCKS or any(len(text) > MAX_TEXT_OBJECT for text in _texts(blocks)):
        return "invalid_blocks"
    try:
        parsed = [Block.parse(block) for block in blocks]
        if any(block is None for block in parsed):
            return "invalid_blocks"
        for block in parsed:
            assert block is not None
            block.to_dict()  # validates the block and everything in it
    except (SlackObjectFormationError, TypeError, KeyError):
        return "invalid_blocks"
    return None


def _view_refusal(view: dict[str, Any]) -> str | None:
    """What Slack refuses in a view: a modal without a title, more than 100 blocks, or blocks slack_sdk rejects."""
    blocks = view.get("blocks") or []
    if view.get("type") not in ("modal", "home") or len(blocks) > MAX_VIEW_BLOCKS:
        return "invalid_arguments"
    try:
        View(**view).to_dict()  # validates the view, its title and submit lengths, and every block
    except (SlackObjectFormationError, TypeError, KeyError):
        return "invalid_arguments"
    if any(len(text) > MAX_TEXT_OBJECT for text in _texts(blocks)):
        return "invalid_arguments"
    for key in ("title", "submit", "close"):  # a modal's title and buttons: 24 characters at most
        part = view.get(key)
        if isinstance(part, dict) and len(str(part.get("text", ""))) > MAX_VIEW_TITLE:
            return "invalid_arguments"
    return None


def _texts(value: Any) -> list[str]:
    """Every text object's text, anywhere in a block tree."""
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    if not isinstance(value, dict):
        return []
    own = [str(value.get("text", ""))] if value.get("type") in ("mrkdwn", "plain_text") else []
    return own + [text for item in value.values() for text in _texts(item)]


def _has_action(params: dict[str, Any], action_id: str) -> bool:
    for block in params.get("blocks") or []:
        if block.get("type") == "actions" and any(e.get("action_id") == action_id for e in block["elements"]):
            return True
    return False
