"""Money for the batch lane: worst-case estimates, the ledger interface, per-line cost.

Creating a batch reserves its worst-case cost (``Ledger.reserve``); each executed line adds its real
cost to the batch record exactly once (atomically with its result, see ``queue.py``); when the batch
ends the reservation is settled once with that sum. The policy layer provides the real ledger; a
settle must be idempotent per reservation id (a worker may die between settling and recording it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from app.observability.cost import cost_usd, price_for

MESSAGE_OVERHEAD_TOKENS = 8  # role and template tokens per chat message


class Ledger(Protocol):
    async def reserve(self, subjects: list[str], usd: float) -> str:
        """Hold ``usd`` against every subject's budget; raise a 429 GatewayError when it does not fit."""
        ...

    async def settle(self, reservation_id: str, usd: float) -> None:
        """Replace the hold by the actual spend (idempotent per reservation id)."""
        ...


class NullLedger:
    """No budgets configured: every reservation fits, settling records nothing."""

    async def reserve(self, subjects: list[str], usd: float) -> str:
        return f"null-{uuid.uuid4().hex}"

    async def settle(self, reservation_id: str, usd: float) -> None:
        return None


def subjects_for(tenant: str, key_id: str | None) -> list[str]:
    return [f"tenant:{tenant}"] + ([f"key:{key_id}"] if key_id else [])


def _text_bytes(value: Any) -> int:
    """UTF-8 size of every string in a JSON value: an upper bound of its token count (BPE with byte fallback)."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_bytes(v) for v in value.values())
    return 0


def worst_case_tokens(body: Any, url: str, default_max_tokens: int) -> tuple[int, int]:
    """(prompt, completion) token upper bounds of one request body."""
    if not isinstance(body, dict):
        return 0, 0
    if url == "/v1/embeddings":
        return _text_bytes(body.get("input")), 0
    if url == "/v1/chat/completions":
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        prompt = _text_bytes(messages) + MESSAGE_OVERHEAD_TOKENS * len(messages)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
    else:
        prompt = _text_bytes(body.get("prompt"))
        limit = body.get("max_tokens")
    completion = limit if isinstance(limit, int) and limit > 0 else default_max_tokens
    return prompt, completion


def make_estimator(model_prices: Mapping[str, list[str]], default_max_tokens: int
                   ) -> Callable[[Any, str], tuple[int, float]]:
    """``model_prices``: each name a client may send -> the price-table names it may be billed as
    (``auto`` -> every pool). Unknown models cost 0 (the line fails with a 404 anyway)."""

    def estimate(body: Any, url: str) -> tuple[int, float]:
        prompt, completion = worst_case_tokens(body, url, default_max_tokens)
        model = body.get("model") if isinstance(body, dict) else None
        names = model_prices.get(model, []) if isinstance(model, str) else []
        usd = max((cost_usd(name, prompt, completion) for name in names if price_for(name)), default=0.0)
        return prompt + completion, usd

    return estimate


def line_cost(model: str, body: Any) -> float:
    """Actual cost of one executed line from the usage in its response body."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict) or not model:
        return 0.0
    return cost_usd(model, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
