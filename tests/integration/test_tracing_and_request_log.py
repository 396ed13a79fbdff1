"""One request is one trace across deployments (cache miss and cache hit); the request log records
each request with PII redacted, per tenant."""

from __future__ import annotations

import time
import uuid

import pytest

from app.observability.request_log import iter_records
from app.observability.span_file import read_span_file, span_tree
from tests.conftest import REQUEST_LOG, SPAN_FILE

pytestmark = pytest.mark.gateway


def _trace(trace_id: str, expect: set[str], timeout: float = 15) -> list[dict]:
    deadline = time.time() + timeout
    spans: list[dict] = []
    while time.time() < deadline:
        spans = read_span_file(SPAN_FILE, trace_id=trace_id)
        if expect <= {s["name"] for s in spans}:
            return spans
        time.sleep(0.2)
    return spans


def test_cache_miss_then_hit_traces(client) -> None:
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    body = {"model": "auto", "max_tokens": 6, "temperature": 0,
            "messages": [{"role": "user", "content": f"trace me {uuid.uuid4().hex[:6]}"}]}
    miss = client.post("/v1/chat/completions", json=body, headers={"traceparent": parent, "x-llmgw-tenant": "tr"})
    assert miss.status_code == 200 and miss.headers["x-llmgw-trace-id"] == trace_id
    spans = _trace(trace_id, {"ingress", "route", "router.analyze", "cache", "cache.lookup", "generate",
                              "pool.generate"})
    tree = span_tree(spans)
    assert tree[""] == ["ingress"]
    # one span per pipeline stage under the request's span
    stages = ["parse", "authenticate", "scope", "admit", "render_prompt", "route", "tokens", "guard_input", "reserve",
              "cache", "generate"]
    assert sorted(tree["ingress"]) == sorted(stages)
    assert tree["route"] == ["router.analyze"] and tree["cache"] == ["cache.lookup"]
    assert tree["generate"] == ["pool.generate"]
    assert len({s["pid"] for s in spans}) >= 3  # ingress, router, cache and pool are separate processes
    ingress = next(s for s in spans if s["name"] == "ingress")
    assert ingress["attributes"]["llmgw.tenant"] == "tr"

    hit = client.post("/v1/chat/completions", json=body, headers={"x-llmgw-tenant": "tr"})
    assert hit.headers["x-llmgw-cache"] == "hit-exact"
    hit_trace = hit.headers["x-llmgw-trace-id"]
    assert hit_trace != trace_id
    # the repeat is answered by this ingress replica's near cache (cache.near_ttl_s): no hop, no cache.lookup
    hit_spans = _trace(hit_trace, {"ingress", "cache.near"})
    names = {s["name"] for s in hit_spans}
    assert "cache.lookup" not in names and "pool.generate" not in names and "generate" not in names
    near = next(s for s in hit_spans if s["name"] == "cache.near")
    assert near["attributes"].get("llmgw.cache.outcome") == "hit-exact"


def test_request_log_redacts_and_filters_by_tenant(client) -> None:
    secret = "Email me at jane.doe@example.com"
    tag = uuid.uuid4().hex[:8]
    body = {"model": "small", "max_tokens": 4, "cache": False, "ignore_eos": True,
            "messages": [{"role": "user", "content": f"{secret} {tag}"}]}
    resp = client.post("/v1/chat/completions", json=body, headers={"x-llmgw-tenant": "logger"})
    assert resp.status_code == 200
    deadline = time.time() + 10
    mine = []
    while time.time() < deadline and not mine:
        mine = [r for r in iter_records(str(REQUEST_LOG), tenant="logger") if tag in str(r.messages)]
        time.sleep(0.2)
    assert mine, "request not logged"
    record = mine[0]
    assert "jane.doe@example.com" not in str(record.messages)
    assert record.trace_id == resp.headers["x-llmgw-trace-id"] and record.completion_tokens == 4
    assert record.route == "small" and record.latency_ms > 0
    assert all(r.tenant == "tr" for r in iter_records(str(REQUEST_LOG), tenant="tr"))
