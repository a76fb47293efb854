"""Typed connector actions, the registry that finds connectors by entry point, and the sandbox connectors.

Connectors know no Slack and no LLM: they receive a validated action and an idempotency key.
"""
