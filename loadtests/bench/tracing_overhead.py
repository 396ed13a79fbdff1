"""Tracing overhead per request: off vs sampled 100%, on the span tree one gateway request makes.

    python -m loadtests.bench.tracing_overhead [--requests 3000] [--repeats 5]

Each simulated request opens what the gateway opens: ingress root (from an incoming traceparent),
auth, cache lookup, router, pool call + engine span, guardrails; sets the usual attributes; and
passes the W3C carrier (pickled, as Ray does) at every deployment boundary. Modes:

* ``noop``       - tracing never set up (NoOp tracer): the floor.
* ``off``        - SDK set up, sample_ratio 0 (what "tracing off" costs: ids still made for headers).
* ``on-otlp``    - sampled 100%, BatchSpanProcessor + spans encoded to OTLP protobuf (not sent).
* ``on-file``    - sampled 100%, JSONL span file (the cross-process test/debug exporter).
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from app.observability import tracing
from app.observability.settings import TracingConfig

INCOMING = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


class EncodeOnlyExporter(SpanExporter):
    """Does the CPU work of an OTLP export (protobuf encoding) without a network."""

    def __init__(self) -> None:
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _hop(carrier: dict[str, str]) -> dict[str, str]:
    return pickle.loads(pickle.dumps(carrier))  # a Ray handle call pickles its arguments


def one_request(i: int) -> str:
    incoming = {"traceparent": f"00-{i:032x}-00f067aa0ba902b7-01"} if i % 2 else {}
    with tracing.start_span("ingress", carrier=incoming,
                            attributes={"tenant": "acme", "endpoint": "chat", "model": "auto", "stream": True}) as root:
        with tracing.start_span("auth", attributes={"tenant": "acme"}):
            pass
        with tracing.start_span("cache.lookup", carrier=_hop(tracing.inject_context())) as span:
            tracing.set_attributes(span, cache="miss", cache_layer=None)
        with tracing.start_span("router", carrier=_hop(tracing.inject_context())) as span:
            tracing.set_attributes(span, route="small", route_reason="classifier")
        with tracing.start_span("pool.generate", carrier=_hop(tracing.inject_context())) as span:
            with tracing.start_span("engine.generate"):
                pass
            tracing.set_attributes(span, response_model="tiny-small", prompt_tokens=42, completion_tokens=128)
        with tracing.start_span("guardrails.output"):
            pass
        tracing.set_attributes(root, route="small", path="pool:small", fallback=False, cost_usd=1.2e-5, status=200)
        return tracing.trace_headers(root).get(tracing.TRACE_ID_HEADER, "")


def time_mode(n: int, repeats: int) -> float:
    """Best-of-repeats mean µs per request (best-of filters noise from the shared CPU)."""
    for i in range(200):
        one_request(i)
    means = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            one_request(i)
        means.append((time.perf_counter() - start) / n * 1e6)
    return min(means)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, float] = {}

    tracing.shutdown_tracing()
    results["noop"] = time_mode(args.requests, args.repeats)

    tracing.setup_tracing(TracingConfig(exporter="none", sample_ratio=0.0))
    results["off"] = time_mode(args.requests, args.repeats)

    tracing.setup_tracing(TracingConfig(exporter="none", sample_ratio=1.0))
    results["shipped"] = time_mode(args.requests, args.repeats)  # the default config: nothing exports

    provider = tracing.setup_tracing(TracingConfig(exporter="none", sample_ratio=1.0, service_name="bench-otlp"))
    # with no exporter configured nothing is recorded; record every trace as an OTLP exporter would have it
    provider.sampler = tracing.get_tracer().sampler = ParentBased(TraceIdRatioBased(1.0))
    exporter = EncodeOnlyExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536))
    results["on-otlp"] = time_mode(args.requests, args.repeats)
    provider.force_flush()

    with tempfile.TemporaryDirectory() as tmp:
        tracing.setup_tracing(TracingConfig(exporter="file", span_file=f"{tmp}/spans.jsonl"))
        results["on-file"] = time_mode(max(args.requests // 3, 100), args.repeats)
    tracing.shutdown_tracing()

    spans = 8
    print(f"tracing overhead per request ({spans} spans, 3 carrier hops; best of {args.repeats} x {args.requests})")
    print(f"{'mode':<10} {'us/request':>11} {'vs off':>10} {'us/span':>9}")
    for mode, us in results.items():
        print(f"{mode:<10} {us:11.1f} {us - results['off']:+10.1f} {us / spans:9.1f}")
    print(f"OTLP payload encoded: {exporter.bytes / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
