"""What `aios audit verify` needs from outside the store to prove the gate: the parameter hashes an action's
capability may carry, and the roles of a stored policy text."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import ConfigDict, ValidationError

from connectors.actions import Action
from connectors.registry import ENTRY_POINT_GROUP, params_hash
from policies.engine import Policy
from policies.errors import PolicyError


def installed_action_models() -> dict[str, list[type[Action]]]:
    """Every action model an installed connector offers, by name; several connectors may offer one name."""
    models: dict[str, list[type[Action]]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        for model in getattr(entry_point.load(), "actions", ()):
            if model not in models.setdefault(model.name, []):
                models[model.name].append(model)
    return models


class ParamsHasher:
    """The hashes a capability for this stored action may carry: through each installed model of its name.
    An action no installed model reads (an MCP tool, known only once its server is connected) is hashed as
    stored, which is what its model dumped when it was proposed."""

    def __init__(self, models: Mapping[str, list[type[Action]]]) -> None:
        self._models = models

    def __call__(self, name: str, params: Mapping[str, Any]) -> set[str]:
        hashes: set[str] = set()
        for model in self._models.get(name, ()):
            try:
                hashes.add(params_hash(model.model_validate(dict(params))))
            except ValidationError:
                continue
        return hashes or {_as_stored(name, params)}


class _StoredAction(Action):
    """Parameters as stored, whatever they are: their dump is what they were when the action was proposed."""

    model_config = ConfigDict(extra="allow", frozen=True)


@cache
def _stored_model(name: str) -> type[_StoredAction]:
    return type(f"Stored[{name}]", (_StoredAction,), {"name": name, "description": name})


def _as_stored(name: str, params: Mapping[str, Any]) -> str:
    return params_hash(_stored_model(name).model_validate(dict(params)))


def roles_of_policy(text: str) -> Mapping[str, Collection[str]] | None:
    """The roles of a stored policy text; None when it no longer loads."""
    try:
        return Policy.from_text(text, "<stored policy>").roles
    except PolicyError:
        return None
