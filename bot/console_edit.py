"""`edit AP-3 amount=40 reason="only the broken mug" as U0MANAGER` in the console: the words read as the Edit
dialog's fields, each value read as its parameter's schema asks (a number, JSON for a nested value, text as
written), and the whole parameter set checked against the action's model before it is submitted."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.actions import Action
from connectors.errors import InvalidActionError
from connectors.mcp_tools import McpToolAction
from connectors.registry import ConnectorRegistry

_APPROVAL = re.compile(r"^AP-\d+$", re.IGNORECASE)
_USER = re.compile(r"^[A-Z][A-Z0-9]+$")  # a Slack user id, as `approve … as U0MANAGER` takes it
EXAMPLE = 'edit AP-3 amount=40 reason="only the broken mug" as U0MANAGER'


class EditLineError(ValueError):
    """What is wrong with an edit as typed, said to the one who typed it."""


@dataclass(frozen=True)
class EditLine:
    approval: str | None  # AP-3; None: this thread's newest waiting request
    changes: dict[str, str]  # parameter name → the value as typed
    user: str | None  # `as U0MANAGER`; None: whoever speaks


def parse_edit(argument: str) -> EditLine:
    """The words after `edit`: an optional approval id, name=value pairs (quoted as in a shell), `as <user>`."""
    try:
        words = shlex.split(argument)
    except ValueError as exc:
        raise EditLineError(f"I could not read that edit ({exc}); for example: {EXAMPLE}") from None
    user = None
    if len(words) >= 2 and words[-2].lower() == "as" and _USER.match(words[-1]):
        user, words = words[-1], words[:-2]
    approval = words.pop(0).upper() if words and _APPROVAL.match(words[0]) else None
    changes: dict[str, str] = {}
    for word in words:
        name, equals, value = word.partition("=")
        if not equals or not name:
            raise EditLineError(f"`{word}` is not a field=value pair; for example: {EXAMPLE}")
        if name in changes:
            raise EditLineError(f"{name} is named twice; say each field once.")
        changes[name] = value
    if not changes:
        raise EditLineError(f"Say which fields to change; for example: {EXAMPLE}")
    return EditLine(approval, changes, user)


def edited_params(
    registry: ConnectorRegistry, name: str, current: Mapping[str, Any], changes: Mapping[str, str]
) -> dict[str, Any]:
    """The action's whole parameter set with these changes, checked against its model; a clear
    EditLineError naming the field when a name is unknown or a value does not fit."""
    model = registry.model_for(name)
    properties = _properties(model)
    unknown = sorted(set(changes) - set(properties))
    if unknown:
        raise EditLineError(
            f"{', '.join(unknown)} {'is not a field' if len(unknown) == 1 else 'are not fields'} of {name}; "
            f"its fields are: {', '.join(properties)}"
        )
    fixed = sorted(set(changes) & model.fixed_fields())
    if fixed:
        raise EditLineError(
            f"{', '.join(fixed)} {'says' if len(fixed) == 1 else 'say'} what the request is about and cannot be "
            "edited; ask for a new request instead. Nothing changed."
        )
    params = {
        **current,
        **{field: _value(field, properties[field], text) for field, text in changes.items()},
    }
    try:
        registry.validate(name, params)
    except InvalidActionError as exc:
        raise EditLineError(f"That edit does not fit {name}: {exc}. Nothing changed.") from None
    return params


def _properties(model: type[Action]) -> dict[str, Any]:
    schema = dict(model.input_schema) if issubclass(model, McpToolAction) else model.model_json_schema()
    properties = schema.get("properties")
    return dict(properties) if isinstance(properties, dict) else {}


def _value(name: str, schema: Any, text: str) -> Any:
    """Text as typed for a text parameter; anything else read as JSON when it is JSON (40, true, {"a": 1},
    null), else left as text for the model to read or refuse. A number is read strictly: yes/no is not one,
    nor is 2.5 a whole number (the model would take true for 1)."""
    if _text_only(schema):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    types = _types(schema)
    if value is None and "null" in types:
        return value
    whole = "integer" in types and types <= {"integer", "null"}
    if whole and (isinstance(value, bool) or not isinstance(value, int)):
        raise EditLineError(f"{name} takes a whole number, and `{text}` is not one. Nothing changed.")
    number = "number" in types and types <= {"number", "integer", "null"}
    if number and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise EditLineError(f"{name} takes a number, and `{text}` is not one. Nothing changed.")
    return value


def _types(schema: Any) -> set[str]:
    """The JSON types a parameter's schema allows, across its alternatives."""
    if not isinstance(schema, dict):
        return set()
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return set().union(*(_types(option) for option in options))
    kind = schema.get("type")
    return (
        {kind}
        if isinstance(kind, str)
        else {k for k in kind if isinstance(k, str)}
        if isinstance(kind, list)
        else set()
    )


def _text_only(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return all(
            _text_only(option) or option.get("type") == "null"
            for option in options
            if isinstance(option, dict)
        )
    return schema.get("type") == "string"
