"""A client that disconnects mid-stream aborts its engine request."""

from __future__ import annotations

import time

import httpx
import pytest
from ray import serve

pytestmark = pytest.mark.gateway


def _pool_stats() -> dict:
    return serve.get_deployment_handle("pool-small", "llm-gateway").stats.remote().result()


def test_disconnect_mid_stream_aborts_engine_request(gateway_url: str) -> None:
    before = _pool_stats()
    body = {
        "model": "small",
        "messages": [{"role": "user", "content": "long story"}],
        "max_tokens": 480,
        "stream": True,
    }
    with (
        httpx.Client(base_url=gateway_url, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as resp,
    ):
        assert resp.status_code == 200
        lines = resp.iter_lines()
        received = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in received)
    # The connection is closed after a few chunks of a 480-token answer.
    deadline = time.time() + 30
    stats = _pool_stats()
    while time.time() < deadline and (stats["aborted"] <= before["aborted"] or stats["running"] > 0):
        time.sleep(0.2)
        stats = _pool_stats()
    assert stats["aborted"] == before["aborted"] + 1
    assert stats["running"] == 0
