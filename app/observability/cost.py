"""Cost of a call, from THE price table (app/policy/prices.py).

The process's table is the built-in one (provider list prices, the ``small``/``large`` pools)
until the policy layer installs the configured table with :func:`use_table` (every served name,
alias and pool GPU cost, free models). ``cost_usd`` keeps its signature for every caller.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.policy.prices import (
    DEFAULT_POOL_PRICES,
    LIST_PRICES,
    Price,
    PriceTable,
    amortised_price,
)

__all__ = ["DEFAULT_PRICES", "Price", "amortised_price", "configure_prices", "cost_usd", "current_table",
           "is_priced", "price_for", "use_table"]

DEFAULT_PRICES: dict[str, Price] = {**LIST_PRICES, **DEFAULT_POOL_PRICES, "cache": Price(0.0, 0.0)}
_table = PriceTable(DEFAULT_PRICES)


def use_table(table: PriceTable) -> None:
    """Install the configured price table for this process."""
    global _table
    _table = table


def current_table() -> PriceTable:
    return _table


def configure_prices(overrides: Mapping[str, tuple[float, float] | Price]) -> None:
    """The built-in table plus ``overrides`` (``observability.prices``-style), for this process."""
    prices = dict(DEFAULT_PRICES)
    for model, price in overrides.items():
        prices[model] = price if isinstance(price, Price) else Price(float(price[0]), float(price[1]))
    use_table(PriceTable(prices))


def price_for(model: str) -> Price | None:
    """Exact name, else the longest known prefix (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``)."""
    return _table.price(model)


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """USD cost of one call; 0.0 for unpriced models (admission refuses those, see ``is_priced``)."""
    cost = _table.cost(model, prompt_tokens, completion_tokens)
    return 0.0 if cost is None else cost


def is_priced(model: str) -> bool:
    return _table.price(model) is not None
