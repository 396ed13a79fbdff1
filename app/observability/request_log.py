"""Per-request log: the prompt/response/evaluation triplet with timings, tokens and cost.

:class:`RequestLogger` is non-blocking for the caller: records go through a bounded queue to a writer
thread that redacts PII, appends JSON lines (size-rotated, safe across processes) and optionally
XADDs to a per-tenant Redis stream with MAXLEN/MINID retention. Readers take a tenant and return
only that tenant's records. The records double as evaluation sets (see docs/observability.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.observability.jsonl_rotate import RotatingJsonl, rotated_paths
from app.observability.metrics import REQUEST_LOG_DROPPED
from app.observability.redact import redact
from app.observability.settings import RequestLogConfig

logger = logging.getLogger("llmgw.request_log")


@dataclass(slots=True)
class RequestLogRecord:
    request_id: str
    tenant: str
    ts: float = field(default_factory=time.time)
    trace_id: str = ""
    endpoint: str = ""  # "chat" | "completions"
    model: str = ""  # as requested
    response_model: str = ""  # who answered
    route: str = ""  # pool chosen by the router
    cache: str = ""  # hit-exact | hit-semantic | miss | bypass | stale
    path: str = ""  # fallback path taken (pool:small, provider:x, stale_cache, unavailable)
    status: int = 200
    error_type: str | None = None
    stream: bool = False
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    response: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)  # canary/guardrail/judge scores, user feedback...
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    price_version: str | None = None  # the price table version cost_usd was computed with
    redactions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestLogRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def redacted(self) -> RequestLogRecord:
        """A copy with PII/secrets replaced in messages, prompt and response; counts in ``redactions``."""
        counts: dict[str, int] = dict(self.redactions)

        def scrub(text: str | None) -> str | None:
            if not text:
                return text
            result = redact(text)
            for label, n in result.counts.items():
                counts[label] = counts.get(label, 0) + n
            return result.text

        messages = None
        if self.messages is not None:
            messages = [{**m, "content": scrub(m.get("content"))} for m in self.messages]
        return dataclasses.replace(self, messages=messages, prompt=scrub(self.prompt),
                                   response=scrub(self.response) or "", redactions=counts)


def stream_key(prefix: str, tenant: str) -> str:
    """One Redis stream per tenant: isolation by key, retention per tenant."""
    return f"{prefix}:{tenant}"


class RequestLogger:
    """Queue + writer thread; ``log`` never blocks (a full queue drops and counts the record)."""

    def __init__(self, cfg: RequestLogConfig, redis_client: Any | None = None) -> None:
        self.cfg = cfg
        self._file = RotatingJsonl(cfg.path, cfg.max_bytes, cfg.backup_count) if cfg.path else None
        self._redis = redis_client
        if cfg.redis_stream and self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(cfg.redis_url or "", socket_timeout=2.0, socket_connect_timeout=2.0)
        self._queue: queue.Queue[RequestLogRecord | None] = queue.Queue(maxsize=cfg.queue_size)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def log(self, record: RequestLogRecord) -> bool:
        """Enqueue ``record``; False if it was dropped (logging off or queue full)."""
        if not self.cfg.enabled:
            return False
        self._ensure_thread()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            REQUEST_LOG_DROPPED.labels("queue").inc()
            return False
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued record is written; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def close(self, timeout_s: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)
            self._thread = None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="llmgw-request-log", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while item is not None and len(batch) < 256:  # drain what is waiting: one file write per batch
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            records = [r for r in batch if r is not None]
            try:
                self._write(records)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if batch[-1] is None:
                return

    def _write(self, records: list[RequestLogRecord]) -> None:
        if self.cfg.redact_pii:
            records = [r.redacted() for r in records]
        lines = [json.dumps(r.to_dict(), ensure_ascii=False, default=str) for r in records]
        if self._file is not None:
            try:
                self._file.write_lines(lines)
            except OSError as exc:
                REQUEST_LOG_DROPPED.labels("file").inc(len(lines))
                logger.warning("request log file write failed: %s", type(exc).__name__)
        if self._redis is not None and self.cfg.redis_stream:
            self._xadd(records, lines)

    def _xadd(self, records: list[RequestLogRecord], lines: list[str]) -> None:
        trim: dict[str, Any] = {"approximate": True}
        if self.cfg.stream_max_age_s is not None:
            trim["minid"] = f"{int((time.time() - self.cfg.stream_max_age_s) * 1000)}-0"
        elif self.cfg.stream_max_len is not None:
            trim["maxlen"] = self.cfg.stream_max_len
        try:
            pipe = self._redis.pipeline(transaction=False)
            for record, line in zip(records, lines, strict=True):
                pipe.xadd(stream_key(self.cfg.redis_stream or "", record.tenant), {"record": line}, **trim)
            pipe.execute()
        except Exception as exc:  # Redis down must never break serving
            REQUEST_LOG_DROPPED.labels("redis").inc(len(records))
            logger.warning("request log redis write failed: %s", type(exc).__name__)


def iter_records(path: str, *, tenant: str) -> Iterator[RequestLogRecord]:
    """This tenant's records from the JSONL file and its rotated copies, oldest first."""
    for data in _iter_file_dicts(path):
        if data.get("tenant") == tenant:
            yield RequestLogRecord.from_dict(data)


def iter_all_records(path: str) -> Iterator[RequestLogRecord]:
    """Every tenant's records (operator/admin use only: building evaluation sets)."""
    for data in _iter_file_dicts(path):
        yield RequestLogRecord.from_dict(data)


def _iter_file_dicts(path: str) -> Iterator[dict[str, Any]]:
    for p in rotated_paths(path):
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash


def iter_stream_records(client: Any, prefix: str, *, tenant: str, count: int | None = None,
                        ) -> Iterator[RequestLogRecord]:
    """This tenant's records from its Redis stream, oldest first (at most ``count``)."""
    for _id, fields in client.xrange(stream_key(prefix, tenant), count=count):
        raw = fields.get(b"record") or fields.get("record")
        data = json.loads(raw)
        if data.get("tenant") == tenant:
            yield RequestLogRecord.from_dict(data)
