"""USD per million tokens for each model: the one place prices live (settings may override them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from agents.llm import Usage


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_creation_input_tokens * self.cache_write
            + usage.cache_read_input_tokens * self.cache_read
        ) / 1_000_000


# Anthropic's list prices (USD per MTok, platform.claude.com/docs/en/about-claude/pricing); cache writes at the
# default 5-minute TTL. Other models: AIOS_LLM_PRICES.
_OPUS = Price(5.00, 25.00, 6.25, 0.50)
_SONNET = Price(3.00, 15.00, 3.75, 0.30)
DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-5": _OPUS,
    "claude-opus-4-8": _OPUS,
    "claude-opus-4-7": _OPUS,
    "claude-opus-4-6": _OPUS,
    "claude-opus-4-5": _OPUS,
    "claude-opus-4-1": Price(15.00, 75.00, 18.75, 1.50),
    "claude-sonnet-4-6": _SONNET,
    "claude-sonnet-4-5": _SONNET,
    "claude-sonnet-4": _SONNET,
    "claude-haiku-4-5": Price(1.00, 5.00, 1.25, 0.10),
    "offline": Price(0.0, 0.0, 0.0, 0.0),
}


class PriceError(ValueError):
    """A price override is malformed, or a configured model has no price."""


class PriceTable:
    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    @classmethod
    def with_overrides(cls, overrides_json: str | None) -> PriceTable:
        """``AIOS_LLM_PRICES='{"my-model": [3, 15, 3.75, 0.3]}'`` adds or replaces prices."""
        prices = dict(DEFAULT_PRICES)
        if overrides_json:
            try:
                raw = json.loads(overrides_json)
                for model, values in raw.items():
                    prices[model] = Price(*(float(v) for v in values))
            except (ValueError, TypeError, AttributeError) as exc:
                raise PriceError(
                    "AIOS_LLM_PRICES must be JSON like "
                    '{"model-name": [input, output, cache_write, cache_read]} in USD per million tokens'
                ) from exc
        return cls(prices)

    @property
    def models(self) -> list[str]:
        """The models with a price, model names only (not the offline planner)."""
        return sorted(model for model in self._prices if model != "offline")

    def price(self, model: str) -> Price:
        try:
            return self._prices[model]
        except KeyError:
            raise PriceError(
                f"no price for model {model!r}; add it with AIOS_LLM_PRICES "
                '(JSON: {"model": [input, output, cache_write, cache_read]} USD per million tokens)'
            ) from None

    def cost(self, model: str, usage: Usage) -> float:
        return self.price(model).cost(usage)
