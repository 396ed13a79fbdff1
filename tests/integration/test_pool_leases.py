"""Streams and unary calls start on pool leases (Serve calls booked ahead, app/relay_lease.py) and answer as
before; cache lookups and stores go over the cache replica's own socket (app/call_channel.py)."""

from __future__ import annotations

import json
import time
import uuid

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


def test_unary_calls_take_leases_and_answer_like_a_stream(gateway_url: str) -> None:
    body = {"model": "small", "messages": [{"role": "user", "content": "Name a city by the sea"}], "max_tokens": 8,
            "temperature": 0, "cache": False}
    with httpx.Client(base_url=gateway_url, timeout=60) as client:
        client.post("/v1/chat/completions", json=body)  # books a lease if none was ready
        time.sleep(0.3)
        before = _leased()
        answers = []
        for _ in range(3):
            resp = client.post("/v1/chat/completions", json=body)
            assert resp.status_code == 200, resp.text
            answers.append(resp.json())
            time.sleep(0.3)
        streamed, _ = _stream_text(client, "Name a city by the sea")
    assert _leased() - before >= 2  # the unary calls came in on leases
    texts = {a["choices"][0]["message"]["content"] for a in answers}
    assert texts == {streamed}  # greedy: the same text by lease, by stream
    usage = answers[-1]["usage"]
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert answers[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_cache_lookups_and_stores_use_the_cache_replicas_channel(gateway_url: str) -> None:
    cache = serve.get_deployment_handle("CacheDeployment", "llm-gateway")
    before = cache.channel_served.remote().result()
    prompt = f"What does the channel test {uuid.uuid4().hex[:8]} cache?"
    body = {"model": "small", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, "temperature": 0}
    with httpx.Client(base_url=gateway_url, timeout=60) as client:
        first = client.post("/v1/chat/completions", json=body)
        deadline = time.monotonic() + 10
        while True:  # the store lands after the answer; another ingress replica has no near cache of it
            second = client.post("/v1/chat/completions", json=body)
            if second.headers.get("x-llmgw-cache", "").startswith("hit") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert first.status_code == 200 and first.headers["x-llmgw-cache"] == "miss"
    assert second.headers["x-llmgw-cache"].startswith("hit")
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert cache.channel_served.remote().result() - before >= 2  # the miss's lookup and its store, at least


def test_lease_outcomes_are_on_the_metrics_endpoint(client) -> None:
    from tests.integration.test_metrics import samples, total

    def taken() -> float:
        return total(samples(client), "llmgw_pool_leases_total", pool="small", outcome="taken")

    before = taken()
    for _ in range(4):
        _stream_text(client, "Tell me about the lake")
        time.sleep(0.3)
    assert taken() - before >= 2  # the first may miss (and book one); later ones take the booked lease
