"""Streams start on pool leases (Serve calls booked ahead, app/relay_lease.py) and answer as before."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from ray import serve

pytestmark = pytest.mark.gateway


def _leased() -> int:
    return serve.get_deployment_handle("pool-small", "llm-gateway").stats.remote().result()["leased"]


def _stream_text(client: httpx.Client, prompt: str) -> tuple[str, list[str]]:
    body = {"model": "small", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8,
            "temperature": 0, "stream": True, "cache": False}
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200, resp.read()
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    text = "".join((json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
                   for line in lines if line != "data: [DONE]")
    return text, lines


def test_streams_take_leases_and_answer_like_a_unary_call(gateway_url: str) -> None:
    before = _leased()
    with httpx.Client(base_url=gateway_url, timeout=60) as client:
        texts = []
        for _ in range(4):  # the first may find no lease ready (it books one); the rest take the booked ones
            text, lines = _stream_text(client, "Tell me about the river")
            assert lines[-1] == "data: [DONE]" and text
            texts.append(text)
            time.sleep(0.3)
        unary = client.post("/v1/chat/completions", json={
            "model": "small", "messages": [{"role": "user", "content": "Tell me about the river"}],
            "max_tokens": 8, "temperature": 0, "cache": False}).json()
    assert _leased() - before >= 3
    assert set(texts) == {unary["choices"][0]["message"]["content"]}  # greedy: the same text either way
