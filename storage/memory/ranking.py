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


def share_of_best(scores: dict[int, float]) -> dict[int, float]:
    """Each score as a share of the best (negatives as 0; all 0 when none is positive)."""
    best = max(scores.values(), default=0.0)
    return {key: max(score, 0.0) / best if best > 0 else 0.0 for key, score in scores.items()}


def fuse(keyword: dict[int, float], vector: dict[int, float], alpha: float) -> dict[int, float]:
    """Relative-score fusion: alpha times the vector similarity plus 1 - alpha times the keyword score, each as a
    share of its best. Each candidate should carry both scores (0 where it does not match the words) and the
    best of each should be among them: then a candidate's score does not depend on which others were fetched
    with it, and fusing a shortlist ranks it as fusing every memory would. Min-max per shortlist would not:
    the lowest score fetched decides how much every other one counts."""
    keyword_n, vector_n = share_of_best(keyword), share_of_best(vector)
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
