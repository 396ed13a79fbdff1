"""Helpers of the policy tests: a real Redis (127.0.0.1:6379 DB 9) under a unique prefix, cleaned up."""

from __future__ import annotations

import uuid

import pytest_asyncio
import redis.asyncio as aioredis

REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest_asyncio.fixture(name="redis_prefix")
async def policy_redis_fixture():
    """(client, prefix); every key under the prefix is deleted afterwards."""
    client = aioredis.Redis.from_url(REDIS_URL)
    prefix = f"test-policy-{uuid.uuid4().hex[:10]}"
    try:
        await client.ping()
    except Exception:
        import pytest

        pytest.skip("Redis at 127.0.0.1:6379 not reachable")
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
