"""The shapes of the Slack payloads the bot reads, checked at the edge before anything indexes into them.

Each model lists only the fields the bot uses and lets every other field through (Slack adds fields over
time). A payload that does not fit is answered with a 2xx or a 400 and logged, never with a 5xx: Slack
counts non-2xx answers as failures, retries them, and may disable the app's subscription.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = structlog.get_logger(__name__)

# Slack's ids and timestamps; the columns that keep them are 40 characters wide.
SlackId = Annotated[str, Field(min_length=1, max_length=40)]
MaybeSlackId = Annotated[str, Field(max_length=40)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Object(_Payload):
    """Something Slack sends either as an id or as an object carrying one (`team`, `user`, `channel`)."""

    id: Any = None


# Ids Slack sends either as a string or as an object; anything else is not a Slack payload.
IdOrObject = str | _Object | None


class _Scope(_Payload):
    """The fields that say whose payload this is; Bolt reads them, at this level and inside `event`."""

    team: IdOrObject = None
    user: IdOrObject = None
    channel: IdOrObject = None
    enterprise: IdOrObject = None


class _EventObject(_Scope):
    type: str = ""


class Envelope(_Scope):
    """What every request body must look like before Bolt routes it (Bolt indexes these without checking)."""

    # Only checked, never read: keeping a copy of every other field (a slash command is a dozen) cost more than
    # the check itself.
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str | None = None
    event: _EventObject | None = None
    authorizations: list[_Scope] | None = None
    actions: list[dict[str, Any]] | None = None
    command: str | None = None

    @model_validator(mode="after")
    def _event_and_actions_are_there(self) -> Envelope:
        if "event" in self.model_fields_set and self.event is None:
            raise ValueError("event: must be an object, not null")
        if self.type == "block_actions" and not (
            self.actions and isinstance(self.actions[0].get("action_id"), str)
        ):
            raise ValueError("a block_actions payload needs at least one action with an action_id")
        return self


class SlashCommandPayload(_Payload):
    model_config = ConfigDict(extra="ignore", frozen=True)  # the fields below are all that is read of it

    user_id: SlackId
    channel_id: SlackId
    team_id: MaybeSlackId | None = None
    text: str = ""
    response_url: str | None = None  # where answers after the ack go, when the payload says


class EventCallback(_Payload):
    """The Events API envelope around an event; `team_id` is null for org-wide (Enterprise Grid) installs."""

    event_id: str | None = None
    team_id: MaybeSlackId | None = None
    event: dict[str, Any]


class MessageEvent(_Payload):
    """An `app_mention` or a direct `message`: the bot answers in the thread of `ts`."""

    channel: SlackId
    ts: SlackId
    thread_ts: MaybeSlackId | None = None
    user: MaybeSlackId = ""
    text: str = ""


class _ClickUser(_Payload):
    id: SlackId


class _ClickChannel(_Payload):
    id: MaybeSlackId = ""


class _ClickContainer(_Payload):
    type: str = ""  # message, or view for a button on the App Home or in a modal (no channel then)
    channel_id: MaybeSlackId = ""
    message_ts: Annotated[str, Field(max_length=40)] = ""  # the message whose button was clicked


class _ClickedButton(_Payload):
    action_id: str
    block_id: Annotated[str, Field(max_length=255)] = ""  # Slack's limit for a block id
    value: Annotated[str, Field(max_length=2000)] = ""  # Slack's limit for a button's value


class ButtonClick(_Payload):
    """A `block_actions` payload for one of the bot's buttons."""

    user: _ClickUser
    actions: Annotated[list[_ClickedButton], Field(min_length=1)]
    channel: _ClickChannel | None = None
    container: _ClickContainer | None = None
    response_url: str | None = None  # where answers after the ack go; none for a click on a view

    @property
    def value(self) -> str:
        return self.actions[0].value

    @property
    def block_id(self) -> str:
        return self.actions[0].block_id

    @property
    def channel_id(self) -> str:
        return (self.channel.id if self.channel else "") or (
            self.container.channel_id if self.container else ""
        )

    @property
    def in_view(self) -> bool:
        """Clicked on the App Home or in a modal, not on a message."""
        return self.container is not None and self.container.type == "view"


Payload = TypeVar("Payload", bound=BaseModel)


def parse_payload(model: type[Payload], data: Any, body: dict[str, Any]) -> Payload | None:
    """``data`` (the whole ``body``, or a part of it) in its model, or None — logged with what did not fit,
    under the delivery's type and id — when it does not have that shape."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        log.warning(
            "slack_payload_malformed",
            type=payload_type(body),
            event_id=delivery_id(body),
            problems=problems(exc),
        )
        return None


def problems(error: ValidationError) -> str:
    """A one-line summary of what did not fit, field by field (`event.channel: Field required`)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}" for item in error.errors()
    )


def delivery_id(body: Any) -> str | None:
    """What identifies this delivery in the logs: the event id, or the trigger id of commands and clicks."""
    if not isinstance(body, dict):
        return None
    for key in ("event_id", "trigger_id"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return None


def payload_type(body: Any) -> str | None:
    """`event_callback:app_mention`, `block_actions`, `slash_command`… for the logs."""
    if not isinstance(body, dict):
        return None
    kind = body.get("type")
    event = body.get("event")
    if kind == "event_callback" and isinstance(event, dict) and isinstance(event.get("type"), str):
        return f"event_callback:{event['type']}"
    if isinstance(kind, str):
        return kind
    return "slash_command" if "command" in body else None
