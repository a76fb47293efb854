"""Scores: relative-score fusion of keyword and vector rankings, and a gentle boost for recent memories."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage.memory.base import MemoryHit
from storage.records import Memory

HYBRID_ALPHA = 0.5  # the weight of vector similarity against keywords, like Weaviate's hybrid alpha
RECENCY_HALF_LIFE_DAYS = 30.0
RELEVANCE_WEIGHT, RECENCY_WEIGHT = 0.8, 0.2


def matches(memory: Memory, kinds: Sequence[str] | None, since: datetime | None) -> bool:
    return (kinds is None or memory.kind in kinds) and (since is None or memory.created_at >= since)


def normalised(scores: dict[int, float]) -> dict[int, float]:
    """Min-max to [0, 1], as relative-score fusion does; a single score (or all equal) becomes 1."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    return {key: (score - low) / (high - low) if high != low else 1.0 for key, score in scores.items()}


def fuse(keyword: dict[int, float], vector: dict[int, float], alpha: float) -> dict[int, float]:
    """Relative-score fusion: each list normalised, then weighted (alpha for vectors, 1 - alpha for keywords)."""
    keyword_n, vector_n = normalised(keyword), normalised(vector)
    return {
        key: alpha * vector_n.get(key, 0.0) + (1 - alpha) * keyword_n.get(key, 0.0)
        for key in keyword_n.keys() | vector_n.keys()
    }


def recency_boosted(hits: list[MemoryHit], now: datetime) -> list[MemoryHit]:
    """Relevance as a share of the best hit's, gently boosted for recency (a 30-day half-life, a fifth of the
    score). A share of the best, not min-max: a hit's relevance does not then depend on which weaker hits were
    fetched with it, so ranking a few candidates orders them as ranking every memory would."""
    best = max((hit.score for hit in hits), default=0.0)
    boosted = []
    for hit in hits:
        relevance = max(hit.score, 0.0) / best if best > 0 else 1.0
        age_days = max((now - hit.created_at).total_seconds() / 86400, 0.0)
        score = RELEVANCE_WEIGHT * relevance + RECENCY_WEIGHT * recency(age_days)
        boosted.append(MemoryHit(hit.id, hit.text, hit.kind, hit.key, score, hit.created_at, hit.tier))
    return boosted


def recency(age_days: Any) -> Any:
    """1 for a memory made now, halving every RECENCY_HALF_LIFE_DAYS (a float, or a numpy array of them)."""
    return 2.0 ** (-age_days / RECENCY_HALF_LIFE_DAYS)
