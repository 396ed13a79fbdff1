"""A span exporter appending JSON lines to one file from many processes (Serve replicas), and its reader.

Used by tests and local debugging to see a whole cross-deployment trace; ``flock`` keeps lines whole.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "name": span.name,
        "trace_id": format_trace_id(ctx.trace_id),
        "span_id": format_span_id(ctx.span_id),
        "parent_span_id": format_span_id(span.parent.span_id) if span.parent else None,
        "kind": span.kind.name,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": (end - start) / 1e6,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [e.name for e in span.events],
        "service": (span.resource.attributes.get("service.name") if span.resource else None),
        "pid": os.getpid(),
    }


class JsonlSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line to ``path`` (safe across processes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not str(path):
            raise ValueError("JsonlSpanExporter needs a file path")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(json.dumps(span_to_dict(s), default=str) + "\n" for s in spans).encode()
        try:
            with open(self.path, "ab") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    f.write(data)
                    f.flush()
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def read_span_file(path: str | os.PathLike[str], trace_id: str | None = None) -> list[dict[str, Any]]:
    """Spans written by :class:`JsonlSpanExporter` (optionally one trace), in start order."""
    p = Path(path)
    if not p.exists():
        return []
    spans = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    if trace_id:
        spans = [s for s in spans if s["trace_id"] == trace_id]
    return sorted(spans, key=lambda s: s["start_ns"])


def span_tree(spans: list[dict[str, Any]]) -> dict[str, list[str]]:
    """``{parent name: [child names]}`` of one trace ("" is the root's parent) — handy in assertions."""
    by_id = {s["span_id"]: s for s in spans}
    tree: dict[str, list[str]] = {}
    for s in spans:
        parent = by_id.get(s["parent_span_id"] or "")
        tree.setdefault(parent["name"] if parent else "", []).append(s["name"])
    return tree
