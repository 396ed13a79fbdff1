"""Pydantic configuration of the whole gateway: one model, loaded from one place.

A Serve config's application ``args`` hold a :class:`GatewayConfig` (inline, or ``config: path``
to a YAML file holding it). The CPU and GPU configs differ only in values (engine args,
resources, autoscaling), never in shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.batch.settings import BatchConfig
from app.caching.settings import CacheConfig
from app.config_env import apply_env_overrides
from app.evaluation.settings import EvaluationConfig
from app.guardrails.settings import GuardrailsConfig
from app.observability.settings import ObservabilityConfig
from app.policy.settings import PolicyConfig
from app.prompts.settings import PromptsConfig
from app.resilience.settings import FallbackConfig

REDIS_URL_ENV = "LLMGW_REDIS__URL"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineConfig(_Strict):
    """vLLM engine arguments for one pool (passed to ``AsyncEngineArgs``)."""

    model: str
    served_model_name: str | None = None
    quantization: str | None = None  # e.g. "compressed-tensors" (llmgw quantize) or "awq_marlin" (AutoAWQ)
    max_model_len: int = 2048
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    enforce_eager: bool = False
    gpu_memory_utilization: float = 0.90
    max_num_seqs: int = 256
    extra_args: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.served_model_name or Path(self.model).name


class PoolConfig(_Strict):
    """One model pool: a Serve deployment of vLLM replicas with its own resources and autoscaling."""

    name: str
    engine_kind: Literal["vllm", "echo"] = "vllm"  # "echo" only for overhead benchmarks
    engine: EngineConfig
    aliases: list[str] = Field(default_factory=list)
    max_ongoing_requests: int = 64
    stream_window_ms: float = 15.0  # tokens produced within this window cross Ray as one chunk
    autoscaling_config: dict[str, Any] = Field(
        default_factory=lambda: {"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 32}
    )
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 1})
    # Serve's max_surge_percent: on a restart, start replacements before the old replicas stop (100 = one
    # spare replica for a one-replica pool, so it needs that much free capacity); None: Serve's default (0).
    max_surge_percent: int | None = Field(None, ge=0, le=100)
    env: dict[str, str] = Field(default_factory=dict)
    # vLLM tool-call parser for the pool's model family (hermes, llama3_json, mistral, ...); tool_choice
    # auto is parsed with it, required / named use guided decoding (docs/api.md).
    tool_parser: str = "hermes"


class RouterConfig(_Strict):
    """Classifier routing for ``model: auto`` (see docs/router.md)."""

    enabled: bool = True
    # ingress: each ingress replica embeds and classifies in-process (no router hop on the hot path);
    # deployment: every verdict is a call to the Router deployment (it always serves the batch lane).
    placement: Literal["ingress", "deployment"] = "ingress"
    artifact: str | None = None  # None -> the bundled default artifact
    threshold: float | None = None  # None -> the artifact's documented threshold
    # Send about this share of traffic to the large pool (mapped to a threshold on the artifact's calibration
    # scores; `threshold` wins if both are set). Per tenant: tenant record option `router.large_share`.
    large_share: float | None = Field(None, ge=0.0, le=1.0)
    small_pool: str = "small"
    large_pool: str = "large"
    default_pool: str = "small"  # used when routing is off or fails
    auto_models: list[str] = Field(default_factory=lambda: ["auto"])
    timeout_s: float = 2.0
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.002
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 0.5})
    num_replicas: int = 1


class AuthConfig(_Strict):
    """Key auth on/off, where the admin key is read from, the tenant header used with auth off.

    Tenant API keys live in the policy store (``llmgw keys create``, docs/policy.md), never in config.
    """

    enabled: bool = False
    admin_key_env: str = "LLMGW_ADMIN_KEY"
    tenant_header: str = "x-llmgw-tenant"  # used only when auth is off

    @model_validator(mode="before")
    @classmethod
    def _no_tenant_key_envs(cls, data: Any) -> Any:
        if isinstance(data, dict) and "tenant_key_envs" in data:
            raise ValueError("auth.tenant_key_envs was removed: tenant keys live in the policy store, hashed "
                             "(`llmgw keys create --tenant <id>`, docs/policy.md); delete the field")
        return data


class IngressConfig(_Strict):
    """The HTTP front door."""

    max_body_bytes: int = 1 << 20
    default_max_tokens: int = 256
    num_replicas: int = 1
    max_ongoing_requests: int = 1000
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 0.5})
    request_timeout_s: float = 120.0
    # pool streams: tokens over each replica's relay socket (one handle call of two items per request);
    # false: every window of tokens is an item on the Serve handle (docs/performance.md)
    stream_relay: bool = True
    # relay streams start on a Serve call booked ahead (app/relay_lease.py): this many ready per pool and
    # ingress replica, each held at most pool_lease_ttl_s and renewed only while the pool had traffic; 0: off
    pool_leases: int = Field(1, ge=0, le=64)
    pool_lease_ttl_s: float = Field(30.0, gt=1.0, le=3600.0)
    # unary pool calls take leases too: ~0.3 ms less latency here but ~1 ms more CPU per request (a streaming Serve
    # call + socket frames instead of one unary call); off by default (docs/performance.md, tenth pass)
    unary_leases: bool = False
    # cache lookups and stores over the cache replica's own socket (app/call_channel.py), not a handle call each
    cache_channel: bool = True
    # the injection classifier and the cache lookup run beside a pool's generation, the answer waiting for
    # both (app/pipeline/gates.py); providers never start before them. false: strictly one after another
    overlap_checks: bool = True


class RedisConfig(_Strict):
    """The one Redis every store uses (``cache.redis_url`` defaults to it).

    Env ``LLMGW_REDIS__URL`` overrides ``url`` in :func:`load_config`, so on a cluster the URL (with its
    password) comes from a Kubernetes Secret, never from the Serve config.
    """

    url: str | None = None


class GatewayConfig(_Strict):
    """The whole application graph."""

    pools: list[PoolConfig]
    router: RouterConfig = Field(default_factory=RouterConfig)
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)

    @model_validator(mode="after")
    def _check_names(self) -> GatewayConfig:
        names = [p.name for p in self.pools]
        if not names:
            raise ValueError("at least one pool is required")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate pool names: {names}")
        if self.router.enabled:
            for field in ("default_pool", "small_pool", "large_pool"):
                if (value := getattr(self.router, field)) not in names:
                    raise ValueError(f"router.{field} {value!r} is not a pool ({names})")
        return self

    @model_validator(mode="after")
    def _policy_store_shared(self) -> GatewayConfig:
        if self.ingress.num_replicas > 1 and not self.redis.url:
            raise ValueError("ingress.num_replicas > 1 needs redis.url: in-memory keys, limits and spend would "
                             "be per replica (limit x replicas)")
        return self

    @model_validator(mode="after")
    def _inherit_redis(self) -> GatewayConfig:
        if self.redis.url and not self.cache.redis_url:
            self.cache.redis_url = self.redis.url
        return self

    def pool(self, name: str) -> PoolConfig:
        return next(p for p in self.pools if p.name == name)

    def model_names(self) -> dict[str, str]:
        """Every name a client may send as ``model`` -> the pool serving it (``auto`` -> "")."""
        names: dict[str, str] = {}
        if self.router.enabled:
            names.update({m: "" for m in self.router.auto_models})
        for pool in self.pools:
            for name in (pool.name, pool.engine.name, *pool.aliases):
                names.setdefault(name, pool.name)
        return names


def load_config(args: dict[str, Any] | str | Path | None = None, base_dir: Path | None = None) -> GatewayConfig:
    """Build a GatewayConfig from Serve ``args``: inline, ``{"config": path}``, a path, or a serve YAML.

    Relative model paths are resolved against ``base_dir`` (default: the current directory).
    """
    if args is None:
        args = {}
    if isinstance(args, (str, Path)):
        args = {"config": str(args)}
    args = dict(args)
    base = base_dir or Path.cwd()
    if "config" in args:
        path = Path(args.pop("config"))
        if not path.is_absolute():
            path = base / path
        data = yaml.safe_load(path.read_text()) or {}
        if "applications" in data:  # a Serve config file: the gateway app's args (pools from their own apps)
            from app.deploy.bind_args import gateway_args

            data = gateway_args(data)
        data = {**data, **args}
        if "config" in data:
            return load_config(data, base_dir=path.parent)
    else:
        data = args
    data = apply_env_overrides(data)  # LLMGW_<SECTION>__<FIELD> (LLMGW_REDIS__URL...), LLMGW_AUTH
    cfg = GatewayConfig.model_validate(data)
    for pool in cfg.pools:
        model = Path(pool.engine.model)
        if not model.is_absolute() and (base / model).exists():
            pool.engine.model = str((base / model).resolve())
            if pool.engine.served_model_name is None:
                pool.engine.served_model_name = model.name
    return cfg
