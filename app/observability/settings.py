"""Observability configuration (meant to become ``GatewayConfig.observability``).

Tracing, request log and canaries; metrics need no settings beyond the standard
``PROMETHEUS_MULTIPROC_DIR`` env var (see docs/observability.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TracingConfig(_Strict):
    """OpenTelemetry tracing. ``file`` appends spans as JSON lines (all processes, for tests and debugging)."""

    exporter: Literal["none", "console", "otlp", "memory", "file"] = "none"
    otlp_endpoint: str | None = None  # e.g. http://collector:4318/v1/traces; None -> OTEL_EXPORTER_OTLP_* env
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)  # root spans; children follow their parent's decision
    service_name: str = "llm-gateway"
    span_file: str | None = None  # required for exporter "file"; env LLMGW_TRACE_SPAN_FILE adds a file exporter

    @model_validator(mode="after")
    def _check(self) -> TracingConfig:
        if self.exporter == "file" and not self.span_file:
            raise ValueError("tracing.exporter 'file' needs tracing.span_file")
        return self


class RequestLogConfig(_Strict):
    """Per-request JSON lines (prompt/response/evaluation, PII redacted) and an optional Redis stream."""

    path: str | None = None  # JSONL file; None -> no file
    max_bytes: int = Field(64 * 1024 * 1024, gt=0)  # rotate when the file would exceed this
    backup_count: int = Field(5, ge=0)  # rotated files kept: path.1 .. path.N (older ones deleted)
    redis_url: str | None = None
    redis_stream: str | None = None  # stream key prefix; one stream per tenant: "<prefix>:<tenant>"; None -> off
    stream_max_len: int | None = Field(100_000, gt=0)  # XADD MAXLEN ~ (per tenant stream)
    stream_max_age_s: float | None = None  # XADD MINID ~ now-age (time-based retention); overrides max_len
    redact_pii: bool = True
    queue_size: int = Field(10_000, gt=0)  # records waiting for the writer thread; beyond it records are dropped

    @model_validator(mode="after")
    def _check(self) -> RequestLogConfig:
        if self.redis_stream and not self.redis_url:
            raise ValueError("request_log.redis_stream needs request_log.redis_url")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.path or self.redis_stream)


CheckKind = Literal["status", "exact", "contains", "regex", "max_latency_ms", "header", "json_path", "judge_score"]


class CanaryCheck(_Strict):
    """One expectation on a canary response.

    ``exact``/``contains``/``regex`` look at ``field`` (a dotted path into the JSON body, default the
    first choice's text); ``header`` compares response header ``name`` to ``value`` (regex match);
    ``json_path`` requires ``field`` to exist; ``status`` and ``max_latency_ms`` compare numbers;
    ``judge_score`` fails when the LLM judge (``evaluation.judge``) scores the answer below ``value`` (0..1).
    """

    kind: CheckKind
    value: Any = None
    field: str | None = None
    name: str | None = None  # header name for kind "header"


class CanaryConfig(_Strict):
    """A reference request with a known expected answer."""

    name: str
    path: str = "/v1/chat/completions"
    body: dict[str, Any]
    api_key_env: str | None = None  # env var holding a key for the Authorization header; never logged
    headers: dict[str, str] = Field(default_factory=dict)  # non-secret extra headers (e.g. x-llmgw-tenant)
    checks: list[CanaryCheck] = Field(default_factory=lambda: [CanaryCheck(kind="status", value=200)])


class CanarySettings(_Strict):
    enabled: bool = False  # periodic runs inside the gateway; `llmgw canary run` works regardless
    base_url: str = "http://127.0.0.1:8000"  # the gateway as seen from inside the cluster
    interval_s: float = Field(300.0, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    canaries: list[CanaryConfig] = Field(default_factory=list)


class ObservabilityConfig(_Strict):
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    request_log: RequestLogConfig = Field(default_factory=RequestLogConfig)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)  # model -> (USD/1M in, USD/1M out)
