"""/metrics parses with the Prometheus text parser and its counters move as requests are made."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.gateway


def samples(client) -> dict[tuple[str, tuple], float]:
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(snap: dict, name: str, **labels) -> float:
    return sum(v for (n, lab), v in snap.items() if n == name and all((k, v2) in lab for k, v2 in labels.items()))


def test_counters_move(client) -> None:
    before = samples(client)
    text = f"metrics please {uuid.uuid4().hex[:6]}"
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 6, "temperature": 0}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert client.post("/v1/chat/completions", json=body).headers["x-llmgw-cache"] == "hit-exact"
    assert client.post("/v1/chat/completions", json={**body, "stream": True, "cache": False}).status_code == 200
    assert client.post("/v1/chat/completions", json={"model": "nope", "messages": body["messages"]}).status_code == 404
    after = samples(client)
    chat = {"endpoint": "/v1/chat/completions"}
    assert total(after, "llmgw_requests_total", status="200", **chat) - total(
        before, "llmgw_requests_total", status="200", **chat) == 3
    assert total(after, "llmgw_requests_total", status="404", **chat) - total(
        before, "llmgw_requests_total", status="404", **chat) == 1
    # a repeat within cache.near_ttl_s is answered by the ingress' near cache (layer "near")
    def hits(seen) -> float:
        return sum(total(seen, "llmgw_cache_lookups_total", outcome="hit", layer=layer) for layer in ("exact", "near"))
    assert hits(after) > hits(before)
    assert total(after, "llmgw_router_decisions_total") - total(before, "llmgw_router_decisions_total") == 3
    assert total(after, "llmgw_ttft_seconds_count") - total(before, "llmgw_ttft_seconds_count") == 1
    assert total(after, "llmgw_completion_tokens_total") - total(before, "llmgw_completion_tokens_total") >= 6
    assert total(after, "llmgw_request_errors_total", status="404", **chat) - total(
        before, "llmgw_request_errors_total", status="404", **chat) == 1
    # >= : the periodic canaries (other endpoint) are answered by a pool too.
    assert total(after, "llmgw_fallback_path_total") - total(before, "llmgw_fallback_path_total") >= 2
    assert any(n == "llmgw_breaker_state" for n, _ in after)
    assert ("llmgw_pool_ongoing_requests", (("pool", "small"),)) in after  # back to 0 when idle
    assert after[("llmgw_pool_ongoing_requests", (("pool", "small"),))] == 0


def test_canaries_run_periodically_and_flag_deviation(client) -> None:
    import time

    deadline = time.time() + 60
    snap = samples(client)
    def seen() -> bool:  # the first rounds may run while the pools are still starting
        return (total(snap, "llmgw_canary_runs_total", canary="smoke", result="ok") >= 1
                and total(snap, "llmgw_canary_runs_total", canary="expect-wrong-route", result="deviation") >= 1)

    while time.time() < deadline and not seen():
        time.sleep(1)
        snap = samples(client)
    canary = {k: v for k, v in snap.items() if "canary" in k[0]}
    assert total(snap, "llmgw_canary_runs_total", canary="smoke", result="ok") >= 1, canary
    assert total(snap, "llmgw_canary_runs_total", canary="expect-wrong-route", result="deviation") >= 1
    assert total(snap, "llmgw_canary_deviation", canary="expect-wrong-route") == 1
    assert total(snap, "llmgw_canary_deviation", canary="smoke") == 0
