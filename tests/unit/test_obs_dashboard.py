"""The Grafana dashboard queries series the code really emits: drive the code paths that record metrics,
then check every series each panel selects (name, label matchers, the labels it groups by, non-empty)
is in prometheus_client's text exposition of the registry."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.errors import RateLimitError
from app.generation import GenerationRequest
from app.observability import metrics
from app.observability.cost import configure_prices, current_table, use_table
from app.observability.request_outcome import record_success
from app.resilience.breaker import STATE_VALUE, BreakerRegistry
from app.resilience.settings import BreakerConfig

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana-dashboard.json"
SERIES = re.compile(r"\b(llmgw_[a-z_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUP_BY = re.compile(r"\bby\s*\(([^)]*)\)")


@pytest.fixture()
def canary_target() -> Iterator[str]:
    """A real local HTTP server: answers 200 with no choices, so a check on the answer deviates."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = json.dumps({"choices": []}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def drive_the_code_paths(canary_url: str) -> None:
    """One pass through each place the gateway records a metric the dashboard reads."""
    from app.guardrails.decisions import GuardDecision, record
    from app.observability.canary import run_canary
    from app.observability.settings import CanaryCheck, CanaryConfig
    from app.policy.enforce import Enforcer
    from app.policy.service import PolicyService
    from app.policy.settings import PolicyConfig, TenantDefaults
    from deployments.pool import ModelPool

    # a streamed answer (latency, TTFT, TPOT, tokens, cost: the served name priced, as the policy layer's
    # configured table does) and a failed request with its provider
    configure_prices({"tiny-small": (0.1, 0.2)})
    record_success("/v1/chat/completions", "small", "tiny-small", True, "acme", 0.0, 0.05, 12, 9)
    metrics.observe_request(endpoint="/v1/chat/completions", route="large", model="fake-gpt", status=503,
                            latency_s=0.4, stream=False, tenant="acme", error_type="service_unavailable",
                            provider="fake-openai")
    for outcome, layer in (("hit", "exact"), ("hit", "semantic"), ("miss", None)):
        metrics.observe_cache(outcome, layer)
    metrics.observe_route("large", "classifier")
    metrics.observe_path("providers", fallback=True)
    breakers = BreakerRegistry(BreakerConfig(failure_threshold=1))
    breakers.get("pool:small").record_failure()
    metrics.set_breaker_states({n: STATE_VALUE[b.state] for n, b in breakers.breakers.items()})

    async def go() -> None:
        pool = ModelPool.func_or_class({"name": "small", "engine_kind": "echo", "engine": {"model": "echo-small"}})
        await pool.generate(GenerationRequest(request_id="r1", model="small", prompt="hello"))
        service = PolicyService(PolicyConfig(tenants={"acme": TenantDefaults(rpm=1)}), auth_enabled=False)
        who = await service.authenticate({"x-llmgw-tenant": "acme"})
        enforcer = Enforcer(service)
        await enforcer.admit(who)
        with pytest.raises(RateLimitError):
            await enforcer.admit(who)
        canary = CanaryConfig(name="arith", body={"model": "auto", "messages": [{"role": "user", "content": "1+1"}]},
                              checks=[CanaryCheck(kind="contains", value="2")])
        async with httpx.AsyncClient(base_url=canary_url) as client:
            assert not (await run_canary(client, canary)).ok

    asyncio.run(go())
    record([GuardDecision(stage="input", rule="injection.pattern", action="block", reason="prompt_injection")])


def emitted() -> list[tuple[str, dict[str, str]]]:
    text, _ = metrics.render_metrics()
    return [(s.name, s.labels) for fam in text_string_to_metric_families(text.decode()) for s in fam.samples]


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for name, op, value in matchers:
        value = value.replace("$route", ".+")
        got = labels.get(name, "")
        ok = {"=": got == value, "!=": got != value, "=~": re.fullmatch(value, got) is not None,
              "!~": re.fullmatch(value, got) is None}[op]
        if not ok:
            return False
    return True


def test_every_dashboard_series_is_emitted(canary_target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)  # this process's registry
    table = current_table()
    try:
        drive_the_code_paths(canary_target)
    finally:
        use_table(table)
    samples = emitted()
    dash = json.loads(DASHBOARD.read_text())
    missing = []
    for panel in (p for p in dash["panels"] if p["type"] != "row"):
        for target in panel["targets"]:
            expr = target["expr"]
            grouped = {g.strip() for by in GROUP_BY.findall(expr) for g in by.split(",")} - {"le", ""}
            for name, selector in SERIES.findall(expr):
                matchers = MATCHER.findall(selector or "")
                if not any(n == name and _matches(labels, matchers) and all(labels.get(g) for g in grouped)
                           for n, labels in samples):
                    missing.append((panel["title"], name, selector, sorted(grouped)))
    assert not missing, missing


def test_dashboard_shape() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    titles = " | ".join(p["title"].lower() for p in panels)
    for needle in ("p50/p95/p99", "time to first token", "tokens/s", "cost per hour", "cache hit rate",
                   "route split", "errors/s by provider"):
        assert needle in titles, needle
    assert any("histogram_quantile(0.99" in t["expr"] for p in panels for t in p["targets"])
