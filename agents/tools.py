"""Tool specs built from the connector action models, so the planner sees exactly the typed parameters."""

from __future__ import annotations

from agents.llm import ToolSpec
from connectors.actions import Action


def tool_name(action_name: str) -> str:
    """Tool names allow only ``[a-zA-Z0-9_-]``: ``shop.refund`` → ``shop_refund``."""
    return action_name.replace(".", "_")


def tool_spec(model: type[Action]) -> ToolSpec:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return ToolSpec(name=tool_name(model.name), description=model.description, input_schema=schema)
