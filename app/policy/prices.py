"""THE price table: USD per 1M input / output tokens for every model name the gateway answers with.

Built once from config (``policy.prices``): provider list prices (built in, overridable), every
served name and alias of a self-hosted pool priced from the pool's GPU cost per hour
(:func:`amortised_price`), explicit per-model prices, and ``free_models`` (cost 0). A model with
no price is *unpriced*: admission refuses it (fail closed). The table has a version (configured,
or a hash of its content) written into every request log record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


FREE = Price(0.0, 0.0)


def amortised_price(gpu_usd_per_hour: float, input_tok_per_s: float, output_tok_per_s: float) -> Price:
    """A self-hosted pool's price: the GPU's hourly cost spread over the tokens it processes per hour.

    Prefill (input) is far cheaper per token than decode (output), hence two throughputs.
    """
    per_hour = 3600.0 / 1e6
    return Price(gpu_usd_per_hour / (input_tok_per_s * per_hour), gpu_usd_per_hour / (output_tok_per_s * per_hour))


# Provider list prices (USD per 1M tokens); dated names match by prefix (gpt-4o-mini-2024-07-18).
LIST_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1": Price(2.00, 8.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-haiku": Price(0.25, 1.25),
}

# Indicative USD per GPU-hour by Ray accelerator type (the GPU names of cluster/profiles.yaml).
GPU_USD_PER_HOUR: dict[str, float] = {"L4": 0.80, "L40S": 1.90, "A100-80G": 1.80, "H100": 2.90}
# Input / output tokens per second one replica sustains at its pool's target concurrency.
POOL_THROUGHPUT: dict[str, tuple[float, float]] = {"small": (40_000, 2_500), "large": (12_000, 700)}


def gpu_pool_price(accelerator_type: str | None, num_gpus: float, input_tok_per_s: float,
                   output_tok_per_s: float) -> Price | None:
    """A pool's price from what one replica holds: GPU type × count; None without a known GPU."""
    rate = GPU_USD_PER_HOUR.get(accelerator_type or "")
    if rate is None or not num_gpus:
        return None
    return amortised_price(rate * num_gpus, input_tok_per_s, output_tok_per_s)


# Default GPU costs when a pool has no ``policy.prices.pools`` entry and no GPU in its ray_actor_options:
# the small model on one L4, the large 70B AWQ model on two A100-80G (tensor parallel 2), as deployed.
DEFAULT_POOL_PRICES: dict[str, Price] = {
    "small": gpu_pool_price("L4", 1, *POOL_THROUGHPUT["small"]),
    "large": gpu_pool_price("A100-80G", 2, *POOL_THROUGHPUT["large"]),
}


class PriceTable:
    """Exact name, else the longest known prefix; ``None`` means unpriced (refused at admission)."""

    def __init__(self, prices: Mapping[str, Price], version: str | None = None) -> None:
        self._prices = dict(prices)
        content = json.dumps({k: [p.input_per_mtok, p.output_per_mtok] for k, p in sorted(self._prices.items())})
        self.version = version or "sha-" + hashlib.sha256(content.encode()).hexdigest()[:12]

    def price(self, model: str) -> Price | None:
        if model in self._prices:
            return self._prices[model]
        best = max((name for name in self._prices if model.startswith(name)), key=len, default=None)
        return self._prices[best] if best else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self.price(model)
        return None if price is None else price.cost(prompt_tokens, completion_tokens)

    def names(self) -> list[str]:
        return sorted(self._prices)

    def as_dict(self) -> dict[str, object]:
        return {"version": self.version,
                "models": {k: [p.input_per_mtok, p.output_per_mtok] for k, p in sorted(self._prices.items())}}


def build_price_table(pools: Iterable[tuple[str, list[str]]], *, pool_prices: Mapping[str, Price] | None = None,
                      models: Mapping[str, tuple[float, float]] | None = None, free_models: Iterable[str] = (),
                      include_list_prices: bool = True, version: str | None = None) -> PriceTable:
    """``pools``: (pool name, every name it serves). Later sources win: list < pools < models < free.

    In ``models`` and ``free_models`` a pool's name prices every name it serves.
    """
    prices: dict[str, Price] = dict(LIST_PRICES) if include_list_prices else {}
    configured = {**DEFAULT_POOL_PRICES, **(pool_prices or {})}
    served = {pool: [pool, *names] for pool, names in pools}  # a pool name stands for all its names
    for pool, names in served.items():
        if (price := configured.get(pool)) is not None:
            for name in names:
                prices[name] = price
    for name, (inp, out) in (models or {}).items():
        for n in served.get(name, [name]):
            prices[n] = Price(float(inp), float(out))
    for name in free_models:
        for n in served.get(name, [name]):
            prices[n] = FREE
    prices["cache"] = FREE  # a cache hit generates nothing
    return PriceTable(prices, version)
