"""Tool specs built from the connector action models, so the planner sees exactly the typed parameters."""

from __future__ import annotations

from functools import lru_cache

from agents.llm import ToolSpec
from connectors.actions import Action


def tool_name(action_name: str) -> str:
    """Tool names allow only ``[a-zA-Z0-9_-]``: ``shop.refund`` → ``shop_refund``."""
    return action_name.replace(".", "_")


@lru_cache(maxsize=512)
def tool_spec(model: type[Action]) -> ToolSpec:
    """The spec of an action's tool. Built once per action class (its JSON schema is static, and pydantic takes
    a while to generate it); the spec and its schema are shared, so read only."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    return ToolSpec(name=tool_name(model.name), description=model.description, input_schema=schema)
