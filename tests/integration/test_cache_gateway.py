"""The cache through the real gateway: hits by layer, streaming from cache, bypass, tenant isolation, admin."""

from __future__ import annotations

import json
import os
import uuid

import pytest

pytestmark = pytest.mark.gateway
CHAT = "/v1/chat/completions"


def ask(client, text: str, tenant: str = "t-cache", stream: bool = False, **extra):
    body = {"model": "small", "messages": [{"role": "user", "content": text}], "max_tokens": 12, "temperature": 0,
            "stream": stream, **extra}
    return client.post(CHAT, json=body, headers={"x-llmgw-tenant": tenant, **extra.pop("headers", {})})


def sse_text(resp) -> str:
    parts = []
    for line in resp.text.splitlines():
        if line.startswith("data: {"):
            chunk = json.loads(line[6:])
            if chunk["choices"]:
                parts.append(chunk["choices"][0]["delta"].get("content") or "")
    assert resp.text.rstrip().endswith("data: [DONE]")
    return "".join(parts)


def test_exact_hit_returns_the_same_answer(client) -> None:
    text = f"Explain caching {uuid.uuid4().hex[:6]}"
    first = ask(client, text)
    second = ask(client, text)
    assert first.headers["x-llmgw-cache"] == "miss" and second.headers["x-llmgw-cache"] == "hit-exact"
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert second.json()["usage"] == first.json()["usage"]


def test_streaming_request_served_from_cache_as_sse(client) -> None:
    text = f"Stream from the cache {uuid.uuid4().hex[:6]}"
    original = ask(client, text).json()["choices"][0]["message"]["content"]
    streamed = ask(client, text, stream=True)
    assert streamed.headers["x-llmgw-cache"] == "hit-exact"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert sse_text(streamed) == original


def test_streamed_answer_is_stored_for_later(client) -> None:
    text = f"Store my stream {uuid.uuid4().hex[:6]}"
    first = ask(client, text, stream=True)
    assert first.headers["x-llmgw-cache"] == "miss"
    streamed_text = sse_text(first)
    for _ in range(20):  # the store is fire-and-forget after the stream ends
        again = ask(client, text)
        if again.headers["x-llmgw-cache"] == "hit-exact":
            break
    assert again.headers["x-llmgw-cache"] == "hit-exact"
    assert again.json()["choices"][0]["message"]["content"] == streamed_text


def test_semantic_hit_for_a_paraphrase(client) -> None:
    ask(client, "How do I reset my password?", tenant="t-sem")
    hit = ask(client, "How can I reset my password?", tenant="t-sem")
    assert hit.headers["x-llmgw-cache"] == "hit-semantic"
    miss = ask(client, "How do I reset my router?", tenant="t-sem")
    assert miss.headers["x-llmgw-cache"] == "miss"


def test_two_tenants_never_see_each_others_answers(client) -> None:
    text = f"What is our refund policy? {uuid.uuid4().hex[:6]}"
    ask(client, text, tenant="acme")
    other = ask(client, text, tenant="globex")
    assert other.headers["x-llmgw-cache"] == "miss"


@pytest.mark.parametrize(
    ("extra", "headers"),
    [({"cache": False}, {}), ({"temperature": 1.5}, {}), ({}, {"cache-control": "no-cache"}),
     ({"tools": [{"type": "function", "function": {"name": "f"}}]}, {})],
)
def test_bypass(client, extra: dict, headers: dict) -> None:
    text = f"bypass me {uuid.uuid4().hex[:6]}"
    body = {"model": "small", "messages": [{"role": "user", "content": text}], "max_tokens": 8, "temperature": 0}
    for _ in range(2):
        resp = client.post(CHAT, json={**body, **extra}, headers={"x-llmgw-tenant": "t-bypass", **headers})
        assert resp.status_code == 200
        assert resp.headers["x-llmgw-cache"] == "bypass"


def test_admin_stats_invalidate_flush(client) -> None:
    text = f"billing question {uuid.uuid4().hex[:6]}"
    ask(client, text, tenant="t-admin")
    stats = client.get("/admin/cache/stats", params={"tenant": "t-admin"}).json()
    assert stats["entries"] >= 1 and stats["stores"] >= 1
    assert client.post("/admin/cache/invalidate", json={"tenant": "t-admin", "prefix": "billing"}).json() == {
        "invalidated": 1
    }
    assert ask(client, text, tenant="t-admin").headers["x-llmgw-cache"] == "miss"
    bad = client.post("/admin/cache/invalidate", json={"prefix": 3})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tenant"
    assert client.post("/admin/cache/flush").json()["flushed"] >= 1
    assert client.get("/admin/cache/stats").json()["entries"] == 0


def test_the_graph_runs_the_int8_prefilter_and_the_test_process_keeps_its_own_runtime(client) -> None:
    """The gateway's runtime default reaches every replica through Ray's environment, not this process's."""
    from tests.conftest import OUTER_EMBED_BACKEND, graph_embed_backend

    stats = client.get("/admin/cache/stats").json()
    if graph_embed_backend() == "onnx-int8-prefilter":
        assert stats["embedding_kind"] == "minilm-int8" and stats["prefilter"] is True
    assert os.environ.get("LLMGW_EMBED_BACKEND") == OUTER_EMBED_BACKEND
