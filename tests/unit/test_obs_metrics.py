"""Metrics: exposition parses, counters move; multiprocess aggregation across two real processes; cost table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability import cost, metrics

ROOT = Path(__file__).resolve().parents[2]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _render() -> dict:
    body, content_type = metrics.render_metrics()
    assert content_type.startswith("text/plain")
    return _samples(body.decode())


def test_render_parses_and_counters_move(monkeypatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    req = {"endpoint": "chat", "route": "small", "model": "tiny-small", "status": "200"}
    tok = {"route": "small", "model": "tiny-small", "tenant": "acme"}
    before = _render()
    metrics.observe_request(endpoint="chat", route="small", model="tiny-small", status=200, latency_s=0.2,
                            stream=True, tenant="acme", prompt_tokens=11, completion_tokens=5, cost_usd=0.25,
                            ttft_s=0.04, tpot_s=0.012)
    metrics.observe_request(endpoint="chat", route="small", model="tiny-small", status=502, latency_s=1.2,
                            stream=False, tenant="acme", error_type="upstream_error", provider="fake-openai")
    metrics.observe_cache("hit", "semantic")
    metrics.observe_route("large", "classifier")
    metrics.observe_path("provider:fake-openai", fallback=True)
    metrics.set_breaker_states({"pool:small": 2})
    after = _render()

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("llmgw_requests_total", **req) == 1
    assert delta("llmgw_requests_total", **{**req, "status": "502"}) == 1
    assert delta("llmgw_request_errors_total", **{**req, "status": "502"}, error_type="upstream_error",
                 provider="fake-openai") == 1
    assert delta("llmgw_prompt_tokens_total", **tok) == 11
    assert delta("llmgw_completion_tokens_total", **tok) == 5
    assert delta("llmgw_cost_usd_total", **tok) == pytest.approx(0.25)
    assert delta("llmgw_ttft_seconds_bucket", route="small", model="tiny-small", le="0.05") == 1
    assert delta("llmgw_ttft_seconds_bucket", route="small", model="tiny-small", le="0.025") == 0
    assert delta("llmgw_tpot_seconds_count", route="small", model="tiny-small") == 1
    lat = {"endpoint": "chat", "route": "small", "model": "tiny-small", "stream": "false"}
    assert delta("llmgw_request_latency_seconds_bucket", **lat, le="1.5") == 1
    assert delta("llmgw_request_latency_seconds_bucket", **lat, le="1.0") == 0
    assert delta("llmgw_cache_lookups_total", layer="semantic", outcome="hit") == 1
    assert delta("llmgw_router_decisions_total", route="large", reason="classifier") == 1
    assert delta("llmgw_fallback_path_total", path="provider:fake-openai", fallback="true") == 1
    assert _value(after, "llmgw_breaker_state", target="pool:small") == 2


def test_buckets_span_1ms_to_60s() -> None:
    for buckets in (metrics.LATENCY_BUCKETS, metrics.TPOT_BUCKETS):
        assert buckets[0] == 0.001 and buckets[-1] == 60.0 and list(buckets) == sorted(buckets)


def test_tpot() -> None:
    assert metrics.tpot_seconds(1.0, 2.0, 11) == pytest.approx(0.1)
    assert metrics.tpot_seconds(1.0, 2.0, 1) is None


REPLICA = """
import sys
from app.observability import metrics
n = int(sys.argv[1])
for _ in range(n):
    metrics.observe_request(endpoint="chat", route="small", model="m", status=200, latency_s=0.01, stream=False,
                            tenant="t", completion_tokens=2)
metrics.POOL_ONGOING.labels("small").set(n)
metrics.set_breaker_states({"pool:small": 1 if n == 3 else 0})
print(__import__("os").getpid(), flush=True)
__import__("time").sleep(600)  # a replica that keeps running (a dead one's live gauges are dropped)
"""


def test_multiprocess_aggregates_two_processes(tmp_path, monkeypatch, request) -> None:
    prom_dir = metrics.prepare_multiprocess_dir(tmp_path / "prom")
    env = {**os.environ, "PYTHONPATH": str(ROOT), metrics.MULTIPROC_ENV: str(prom_dir)}
    procs = [subprocess.Popen([sys.executable, "-c", REPLICA, str(n)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              text=True) for n in (3, 4)]
    request.addfinalizer(lambda: [(p.kill(), p.wait()) for p in procs])
    pids = [int(p.stdout.readline().strip()) for p in procs]
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(prom_dir))
    samples = _render()
    assert _value(samples, "llmgw_requests_total", endpoint="chat", route="small", model="m", status="200") == 7
    assert _value(samples, "llmgw_completion_tokens_total", route="small", model="m", tenant="t") == 14
    assert _value(samples, "llmgw_request_latency_seconds_count", endpoint="chat", route="small", model="m",
                  stream="false") == 7
    assert _value(samples, "llmgw_pool_ongoing_requests", pool="small") == 7  # livesum
    assert _value(samples, "llmgw_breaker_state", target="pool:small") == 1  # worst replica
    metrics.mark_process_dead(pids[0])  # a replica went away: its live gauges go too
    samples = _render()
    assert _value(samples, "llmgw_pool_ongoing_requests", pool="small") == 4
    assert _value(samples, "llmgw_requests_total", endpoint="chat", route="small", model="m", status="200") == 7


def test_cost_table() -> None:
    assert cost.cost_usd("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost.cost_usd("gpt-4o-mini-2024-07-18", 2000, 1000) == pytest.approx((2000 * 0.15 + 1000 * 0.60) / 1e6)
    assert cost.cost_usd("claude-3-5-haiku-20241022", 0, 1_000_000) == pytest.approx(4.0)
    assert cost.cost_usd("gpt-4o", 1_000_000, 0) == pytest.approx(2.5)  # not confused with gpt-4o-mini
    assert cost.cost_usd("no-such-model", 100, 100) == 0.0 and not cost.is_priced("no-such-model")
    small = cost.price_for("small")
    assert 0 < small.input_per_mtok < small.output_per_mtok < cost.price_for("large").output_per_mtok
    assert cost.amortised_price(3.6, 1000, 100) == cost.Price(1.0, 10.0)


def test_cost_overrides() -> None:
    try:
        cost.configure_prices({"small": (1.0, 2.0), "my-model": cost.Price(3.0, 4.0)})
        assert cost.cost_usd("small", 1_000_000, 1_000_000) == pytest.approx(3.0)
        assert cost.cost_usd("my-model", 1_000_000, 0) == pytest.approx(3.0)
        assert cost.is_priced("gpt-4o-mini")
    finally:
        cost.configure_prices({})
    assert not cost.is_priced("my-model")
