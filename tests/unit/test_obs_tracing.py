"""Tracing: W3C carrier round-trips (thread and real subprocess), traceparent headers, sampling, exporters."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from opentelemetry.trace import StatusCode
from starlette.datastructures import Headers

from app.observability import tracing
from app.observability.settings import TracingConfig
from app.observability.span_file import read_span_file, span_tree

ROOT = Path(__file__).resolve().parents[2]
TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"


@pytest.fixture()
def memory():
    tracing.setup_tracing(TracingConfig(exporter="memory"))
    exporter = tracing.memory_exporter()
    exporter.clear()
    yield exporter
    tracing.shutdown_tracing()


def _in_fresh_thread(fn):
    """Run ``fn`` in a new thread: it starts with an empty context, like another process would."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def _deployment_call(carrier: dict[str, str], name: str, cache_hit: bool) -> None:
    """What a callee deployment does: continue the caller's trace from the carrier it was given."""
    with tracing.start_span(name, carrier=carrier, attributes={"cache": "hit" if cache_hit else "miss"}):
        pass


def _request(cache_hit: bool) -> str:
    """An ingress request touching the cache deployment and, on a miss, the router and a pool."""
    with tracing.start_span("ingress", attributes={"tenant": "acme", "model": "auto"}) as root:
        carrier = pickle.loads(pickle.dumps(tracing.inject_context()))  # crosses Ray as a plain argument
        _in_fresh_thread(lambda: _deployment_call(carrier, "cache.lookup", cache_hit))
        if not cache_hit:
            with tracing.start_span("router"):
                inner = tracing.inject_context()
                _in_fresh_thread(lambda: _deployment_call(inner, "router.classify", False))
            to_pool = tracing.inject_context()
            _in_fresh_thread(lambda: _deployment_call(to_pool, "pool.generate", False))
        return tracing.trace_id_hex(root)


def _tree(exporter, trace_id: str) -> dict[str, list[str]]:
    spans = [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
    dicts = [{"name": s.name, "span_id": s.context.span_id, "parent_span_id": s.parent.span_id if s.parent else None}
             for s in spans]
    return span_tree(dicts)


def test_cache_miss_is_one_trace_across_deployments(memory) -> None:
    trace_id = _request(cache_hit=False)
    assert len(trace_id) == 32
    tree = _tree(memory, trace_id)
    assert tree[""] == ["ingress"]
    assert sorted(tree["ingress"]) == ["cache.lookup", "pool.generate", "router"]
    assert tree["router"] == ["router.classify"]
    assert {format(s.context.trace_id, "032x") for s in memory.get_finished_spans()} == {trace_id}


def test_cache_hit_trace_has_no_router_or_pool(memory) -> None:
    trace_id = _request(cache_hit=True)
    assert _tree(memory, trace_id) == {"": ["ingress"], "ingress": ["cache.lookup"]}
    lookup = next(s for s in memory.get_finished_spans() if s.name == "cache.lookup")
    assert lookup.attributes["llmgw.cache.outcome"] == "hit"


def test_incoming_traceparent_is_honoured(memory) -> None:
    headers = Headers({"TraceParent": f"00-{TID}-{SID}-01"})
    with tracing.start_span("ingress", carrier=headers) as span:
        assert tracing.trace_id_hex() == TID
        assert tracing.trace_headers(span) == {"x-llmgw-trace-id": TID}
    (finished,) = memory.get_finished_spans()
    assert format(finished.parent.span_id, "016x") == SID and finished.parent.is_remote


def test_plain_dict_carrier_any_case(memory) -> None:
    with tracing.start_span("x", carrier={"Traceparent": f"00-{TID}-{SID}-01"}):
        assert tracing.trace_id_hex() == TID
    assert tracing.inject_context(tracing.extract_context({"TRACEPARENT": f"00-{TID}-{SID}-01"})) == {
        "traceparent": f"00-{TID}-{SID}-01"}


def test_attributes_short_names_and_none_skipped(memory) -> None:
    with tracing.start_span("s", attributes={"tenant": "t1", "route": None, "cost_usd": 0.5, "custom.key": 3}) as s:
        tracing.set_attributes(s, prompt_tokens=7, path="pool:small", fallback=False)
    attrs = memory.get_finished_spans()[0].attributes
    assert attrs["llmgw.tenant"] == "t1" and attrs["llmgw.cost_usd"] == 0.5 and attrs["custom.key"] == 3
    assert attrs["gen_ai.usage.input_tokens"] == 7 and attrs["llmgw.fallback.path"] == "pool:small"
    assert "llmgw.route" not in attrs and attrs["llmgw.fallback.used"] is False


def test_exception_marks_span_error(memory) -> None:
    with pytest.raises(RuntimeError), tracing.start_span("boom"):
        raise RuntimeError("upstream failed")
    (span,) = memory.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR


def test_sampling_off_still_has_trace_id_and_follows_sampled_parent() -> None:
    tracing.setup_tracing(TracingConfig(exporter="memory", sample_ratio=0.0))
    exporter = tracing.memory_exporter()
    try:
        with tracing.start_span("unsampled") as span:
            assert tracing.trace_id_hex(span)  # header still returned
        assert exporter.get_finished_spans() == ()
        with tracing.start_span("child-of-sampled", carrier={"traceparent": f"00-{TID}-{SID}-01"}):
            pass
        assert [s.name for s in exporter.get_finished_spans()] == ["child-of-sampled"]
    finally:
        tracing.shutdown_tracing()


def test_setup_is_idempotent_and_reconfigurable() -> None:
    a = tracing.setup_tracing(TracingConfig(exporter="memory"))
    assert tracing.setup_tracing(TracingConfig(exporter="memory")) is a
    b = tracing.setup_tracing(TracingConfig(exporter="none"))
    assert b is not a and tracing.memory_exporter() is None
    tracing.shutdown_tracing()
    with tracing.start_span("noop") as span:
        assert tracing.trace_id_hex(span) == ""


def test_file_config_requires_path() -> None:
    with pytest.raises(ValueError, match="span_file"):
        TracingConfig(exporter="file")


CHILD = """
import json, sys
from app.observability import tracing
from app.observability.settings import TracingConfig
tracing.setup_tracing(TracingConfig(service_name="pool"))
with tracing.start_span("pool.generate", carrier=json.loads(sys.argv[1]), attributes={"model": "tiny-small"}):
    with tracing.start_span("engine.step"):
        pass
"""


def test_trace_crosses_a_real_process_via_span_file(tmp_path, monkeypatch) -> None:
    span_file = tmp_path / "spans.jsonl"
    monkeypatch.setenv(tracing.SPAN_FILE_ENV, str(span_file))
    tracing.setup_tracing(TracingConfig(exporter="none", service_name="ingress"))
    try:
        with tracing.start_span("ingress") as root:
            carrier = tracing.inject_context()
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            subprocess.run([sys.executable, "-c", CHILD, json.dumps(carrier)], check=True, env=env, cwd=ROOT,
                           timeout=60)
            trace_id = tracing.trace_id_hex(root)
    finally:
        tracing.shutdown_tracing()
    spans = read_span_file(span_file, trace_id=trace_id)
    assert span_tree(spans) == {"": ["ingress"], "ingress": ["pool.generate"], "pool.generate": ["engine.step"]}
    assert len({s["pid"] for s in spans}) == 2
    assert {s["service"] for s in spans} == {"ingress", "pool"}
    pool_span = next(s for s in spans if s["name"] == "pool.generate")
    assert pool_span["attributes"] == {"gen_ai.request.model": "tiny-small"}


def test_nothing_exported_means_nothing_recorded_but_ids_stay() -> None:
    """With no exporter a new trace is not recorded (cheap non-recording spans) yet keeps a valid id for the
    trace id header and the request log; a caller's sampled traceparent is still honoured and propagated."""
    tracing.setup_tracing(TracingConfig(exporter="none"))
    try:
        with tracing.start_span("root") as span:
            assert not span.is_recording()
            assert len(tracing.trace_id_hex(span)) == 32
            assert int(tracing.inject_context()["traceparent"][-2:], 16) & 1 == 0  # not sampled downstream either
        with tracing.start_span("child", carrier={"traceparent": f"00-{TID}-{SID}-01"}) as span:
            assert span.is_recording() and tracing.trace_id_hex(span) == TID
            assert int(tracing.inject_context()["traceparent"][-2:], 16) & 1 == 1
        assert tracing.get_tracer() is tracing.get_tracer()
    finally:
        tracing.shutdown_tracing()
