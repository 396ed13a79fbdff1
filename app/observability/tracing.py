"""OpenTelemetry tracing: one trace per request across Serve deployments.

Each replica calls :func:`setup_tracing` once. The caller of a Ray handle passes
``inject_context()`` (a W3C ``traceparent`` carrier dict) as an argument; the callee opens its
span with ``start_span(..., carrier=carrier)``, so every deployment's spans join the same trace.
Incoming HTTP ``traceparent`` headers are honoured the same way (``carrier=request.headers``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind

from app.observability.settings import TracingConfig
from app.observability.span_file import JsonlSpanExporter

SPAN_FILE_ENV = "LLMGW_TRACE_SPAN_FILE"
TRACE_ID_HEADER = "x-llmgw-trace-id"

# Span attribute keys (gen_ai.* follow the OpenTelemetry GenAI semantic conventions).
ATTRS = {
    "tenant": "llmgw.tenant",
    "endpoint": "llmgw.endpoint",
    "request_id": "llmgw.request_id",
    "route": "llmgw.route",
    "route_reason": "llmgw.route.reason",
    "model": "gen_ai.request.model",
    "response_model": "gen_ai.response.model",
    "stream": "llmgw.stream",
    "cache": "llmgw.cache.outcome",
    "cache_layer": "llmgw.cache.layer",
    "prompt_tokens": "gen_ai.usage.input_tokens",
    "completion_tokens": "gen_ai.usage.output_tokens",
    "cost_usd": "llmgw.cost_usd",
    "path": "llmgw.fallback.path",
    "fallback": "llmgw.fallback.used",
    "provider": "llmgw.provider",
    "guardrail": "llmgw.guardrail",
    "status": "http.response.status_code",
    "error_type": "error.type",
}

_lock = threading.Lock()
_state: dict[str, Any] = {"cfg": None, "provider": None, "memory": None, "file": None, "tracer": None}


def _exporter(cfg: TracingConfig) -> SpanExporter | None:
    if cfg.exporter == "console":
        return ConsoleSpanExporter()
    if cfg.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=cfg.otlp_endpoint) if cfg.otlp_endpoint else OTLPSpanExporter()
    if cfg.exporter == "memory":
        return InMemorySpanExporter()
    if cfg.exporter == "file":
        return JsonlSpanExporter(cfg.span_file or "")
    return None


def setup_tracing(cfg: TracingConfig | None = None) -> TracerProvider:
    """Configure this process's tracer provider; calling again with an equal config is a no-op.

    A different config replaces the provider (the old one is flushed and shut down). If env
    ``LLMGW_TRACE_SPAN_FILE`` is set, spans are also appended to that JSONL file from every process.
    """
    cfg = cfg or TracingConfig()
    span_file = os.environ.get(SPAN_FILE_ENV) or None
    with _lock:
        if _state["provider"] is not None and _state["cfg"] == (cfg, span_file):
            return _state["provider"]
        if _state["provider"] is not None:
            _state["provider"].shutdown()
        exporter = _exporter(cfg)
        # Nothing exports: a new trace is not recorded (its spans are non-recording but keep valid ids, so the
        # trace id header and the request log still carry one), unless a caller's traceparent says sampled.
        root = TraceIdRatioBased(cfg.sample_ratio) if exporter is not None or span_file else ALWAYS_OFF
        provider = TracerProvider(
            resource=Resource.create({"service.name": cfg.service_name, "process.pid": os.getpid()}),
            sampler=ParentBased(root),
        )
        if exporter is not None:
            # Remote exporters batch in a background thread; local ones write synchronously (ordered, testable).
            processor = BatchSpanProcessor if cfg.exporter == "otlp" else SimpleSpanProcessor
            provider.add_span_processor(processor(exporter))
        file_exporter = None
        if span_file and cfg.exporter != "file":
            file_exporter = JsonlSpanExporter(span_file)
            provider.add_span_processor(SimpleSpanProcessor(file_exporter))
        _state.update(cfg=(cfg, span_file), provider=provider, file=file_exporter, tracer=provider.get_tracer("llmgw"),
                      memory=exporter if isinstance(exporter, InMemorySpanExporter) else None)
        return provider


def shutdown_tracing() -> None:
    """Flush and drop the provider (spans are no-ops until the next ``setup_tracing``)."""
    with _lock:
        if _state["provider"] is not None:
            _state["provider"].shutdown()
        _state.update(cfg=None, provider=None, memory=None, file=None, tracer=None)


def memory_exporter() -> InMemorySpanExporter | None:
    """The in-memory exporter when ``exporter == "memory"`` (this process's finished spans)."""
    return _state["memory"]


_NOOP = trace.NoOpTracer()


def get_tracer() -> trace.Tracer:
    """This process's tracer (made once per provider: ``TracerProvider.get_tracer`` is not cheap per span)."""
    return _state.get("tracer") or _NOOP


def inject_context(context: Context | None = None) -> dict[str, str]:
    """The current trace context as a W3C carrier dict (``traceparent``/``tracestate``): pass it across Ray."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def extract_context(carrier: Mapping[str, str] | None) -> Context:
    """A context whose parent is the carrier's span (HTTP headers or a dict from :func:`inject_context`)."""
    if not carrier:
        return Context()
    if not hasattr(carrier, "getlist") and any(k != k.lower() for k in carrier):  # plain dict, any header case
        carrier = {k.lower(): v for k, v in carrier.items()}
    return propagate.extract(carrier)


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if value is None:
            continue
        out[ATTRS.get(key, key)] = value if isinstance(value, str | bool | int | float) else str(value)
    return out


@contextmanager
def start_span(name: str, *, carrier: Mapping[str, str] | None = None, attributes: Mapping[str, Any] | None = None,
               kind: SpanKind = SpanKind.INTERNAL) -> Iterator[Span]:
    """Open a current span; its parent is the carrier's span if given, else the current span.

    Short attribute names (``tenant``, ``route``, ``cost_usd``... see ``ATTRS``) are mapped to their keys;
    ``None`` values are skipped. Exceptions are recorded and mark the span as an error.
    """
    context = extract_context(carrier) if carrier is not None else None
    with get_tracer().start_as_current_span(name, context=context, kind=kind, attributes=_clean(attributes)) as span:
        yield span


def set_attributes(span: Span | None = None, **attributes: Any) -> None:
    """Set short-named attributes on ``span`` (default: the current span); ``None`` values are skipped."""
    (span or trace.get_current_span()).set_attributes(_clean(attributes))


def trace_id_hex(span: Span | None = None) -> str:
    """32 hex chars of the span's (default: current) trace id; "" when there is no valid trace."""
    ctx = (span or trace.get_current_span()).get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else ""


def trace_headers(span: Span | None = None) -> dict[str, str]:
    """Response headers carrying the trace id (empty without a valid trace)."""
    tid = trace_id_hex(span)
    return {TRACE_ID_HEADER: tid} if tid else {}
