"""Policy configuration (``GatewayConfig.policy``): keys, tenants, rate limits, budgets, prices, alerts.

Every store uses the one top-level ``redis.url``; without it keys, limits and spend live in process
memory (single ingress replica only, refused otherwise by ``GatewayConfig``). See docs/policy.md.
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

FailMode = Literal["open", "closed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantDefaults(_Strict):
    """A tenant's limits over all its keys (None = unlimited) and its per-tenant options."""

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    budget_daily_usd: float | None = Field(None, ge=0)
    budget_monthly_usd: float | None = Field(None, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)  # guardrails overrides, cache strictness, ...


class FailModes(_Strict):
    """What a limit does when Redis is unreachable: ``open`` admits (metric + warning), ``closed`` answers 503.

    Authentication always fails closed (a key cannot be checked without its store).
    """

    requests: FailMode = "open"
    tokens: FailMode = "open"
    budget: FailMode = "closed"


class AlertConfig(_Strict):
    """Budget alerts: once per period and threshold (fraction of the budget)."""

    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])
    webhook_url: str | None = None  # None: log event + metric only
    webhook_secret_env: str = "LLMGW_WEBHOOK_SECRET"  # env var holding the signing secret (whsec_... or raw)

    @field_validator("thresholds")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < t <= 10 for t in v):
            raise ValueError("alert thresholds are fractions of the budget, e.g. [0.5, 0.8, 1.0]")
        return sorted(set(v))


class WebhookSettings(_Strict):
    """The product's one webhook sender (app/webhooks/sender.py)."""

    timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    allow_hosts: list[str] = Field(default_factory=list)  # hostnames or CIDRs allowed despite the SSRF guard


class PoolPrice(_Strict):
    """A self-hosted pool's price: its GPU cost per hour spread over the tokens it sustains per second."""

    gpu_usd_per_hour: float = Field(ge=0)
    input_tok_per_s: float = Field(gt=0)
    output_tok_per_s: float = Field(gt=0)


class PriceConfig(_Strict):
    """The one price table. ``version`` None: a content hash of the table (changes whenever a price does)."""

    version: str | None = None
    models: dict[str, tuple[float, float]] = Field(default_factory=dict)  # name -> (USD/1M in, USD/1M out)
    pools: dict[str, PoolPrice] = Field(default_factory=dict)  # pool name -> GPU cost (all its names inherit it)
    include_list_prices: bool = True  # the built-in provider list prices (app/policy/prices.py)


class PolicyConfig(_Strict):
    key_secret_env: str = "LLMGW_KEY_SECRET"  # HMAC-SHA256 secret for key hashes; unset -> plain SHA-256 (warned)
    key_cache_ttl_s: float = Field(0.5, ge=0, le=1.0)  # revocations/limit changes seen by every replica within 1 s
    rotate_overlap_s: float = Field(3600.0, ge=0)  # default overlap of the old key after a rotate
    fail_mode: FailModes = Field(default_factory=FailModes)
    timezone: str = "UTC"  # calendar periods (day at 00:00, month on the 1st) in this zone
    alerts: AlertConfig = Field(default_factory=AlertConfig)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    tenants: dict[str, TenantDefaults] = Field(default_factory=dict)  # YAML defaults; the admin API may override
    default_tenant: TenantDefaults = Field(default_factory=TenantDefaults)  # tenants with no record
    local_admin_key_file: str = ".cache/admin_key"  # written by `make run` when LLMGW_ADMIN_KEY is unset
    protect_metrics: bool = False  # /metrics needs the admin key
    protect_readyz_detail: bool = False  # /readyz without the admin key: status only
    free_models: list[str] = Field(default_factory=list)  # served at cost 0 (else an unpriced model is refused)
    prices: PriceConfig = Field(default_factory=PriceConfig)
    key_prefix: str = "llmgw:policy"  # Redis key prefix of every policy record
    durability: Literal["refuse", "warn"] = "warn"  # Redis maxmemory-policy other than noeviction
    redis_timeout_s: float = Field(0.5, gt=0)  # per call; beyond it the fail mode applies
    audit_max_len: int = Field(100_000, ge=1)
    reservation_hold_s: float = Field(900.0, gt=0)  # a reservation never settled (crashed replica) expires
    idempotency_ttl_s: float = Field(86_400.0, gt=0)  # a rotate replay returns the same new key this long

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception as exc:
            raise ValueError(f"unknown timezone {v!r}") from exc
        return v
