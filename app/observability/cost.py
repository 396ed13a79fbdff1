"""THE price table: USD per 1M input/output tokens for every model the gateway can answer with.

External providers use list prices. Local pools have no per-token bill, so their price is the GPU
cost amortised over the throughput the pool sustains (:func:`amortised_price`); override either
with ``ObservabilityConfig.prices`` via :func:`configure_prices`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float


def amortised_price(gpu_usd_per_hour: float, input_tok_per_s: float, output_tok_per_s: float) -> Price:
    """Price of a self-hosted pool: the GPU's hourly cost spread over the tokens it processes per hour.

    Prefill (input) is far cheaper per token than decode (output), hence two throughputs.
    """
    per_hour = 3600.0 / 1e6
    return Price(gpu_usd_per_hour / (input_tok_per_s * per_hour), gpu_usd_per_hour / (output_tok_per_s * per_hour))


DEFAULT_PRICES: dict[str, Price] = {
    # External providers (list prices, USD per 1M tokens).
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-haiku": Price(0.25, 1.25),
    # Local pools: small model on one L4 ($0.80/h), large AWQ model on one L40S ($1.90/h); throughputs
    # are what vLLM sustains at the pools' target concurrency.
    "small": amortised_price(0.80, input_tok_per_s=40_000, output_tok_per_s=2_500),
    "large": amortised_price(1.90, input_tok_per_s=12_000, output_tok_per_s=700),
    "tiny-small": amortised_price(0.80, input_tok_per_s=40_000, output_tok_per_s=2_500),
    "tiny-large": amortised_price(1.90, input_tok_per_s=12_000, output_tok_per_s=700),
    # Cache answers cost nothing to generate.
    "cache": Price(0.0, 0.0),
}

_prices: dict[str, Price] = dict(DEFAULT_PRICES)


def configure_prices(overrides: Mapping[str, tuple[float, float] | Price]) -> None:
    """Replace/add prices for this process (defaults stay for other models)."""
    _prices.clear()
    _prices.update(DEFAULT_PRICES)
    for model, price in overrides.items():
        _prices[model] = price if isinstance(price, Price) else Price(float(price[0]), float(price[1]))


def price_for(model: str) -> Price | None:
    """Exact name, else the longest known prefix (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``)."""
    if model in _prices:
        return _prices[model]
    best = max((name for name in _prices if model.startswith(name)), key=len, default=None)
    return _prices[best] if best else None


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """USD cost of one call; 0.0 for unknown models (see ``is_priced``)."""
    price = price_for(model)
    if price is None:
        return 0.0
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6


def is_priced(model: str) -> bool:
    return price_for(model) is not None
