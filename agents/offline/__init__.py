"""The offline planner and its grammars."""

from agents.offline.planner import OfflinePlanner

__all__ = ["OfflinePlanner"]
