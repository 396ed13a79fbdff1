"""Shared helpers for prompt/evaluation tests: store backends (memory, real Redis DB 9 with a unique prefix)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

REDIS_URL = "redis://127.0.0.1:6379/9"

TEMPLATE = {
    "messages": [{"role": "system", "content": "You help {{ customer }} with {{ product }}."},
                 {"role": "user", "content": "Tone: {{ tone }}"}],
    "variables": {"customer": {"type": "string"}, "product": {"type": "string"},
                  "tone": {"type": "string", "required": False, "default": "friendly"}},
}


def template(system: str = "You help {{ customer }} with {{ product }}.") -> dict:
    return {**TEMPLATE, "messages": [{"role": "system", "content": system}, TEMPLATE["messages"][1]]}


def redis_prefix() -> Iterator[str]:
    """A unique key prefix in Redis DB 9, cleaned up afterwards; skips when no Redis runs."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1)
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    name = f"llmgw-test-prompts:{uuid.uuid4().hex[:8]}"
    yield name
    keys = list(client.scan_iter(match=f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()
