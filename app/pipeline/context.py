"""The request context every pipeline stage reads and fills, and the answer it ends with.

One :class:`RequestContext` per request, created by the api layer and passed through the ordered
stages (``app.pipeline.pipeline``). A stage reads what earlier stages set and either passes (setting
its own fields) or raises one :class:`~app.errors.GatewayError`. Plain Python: no Serve, no HTTP
framework, so each stage is unit-testable in milliseconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.errors import GatewayError
from app.generation import GenerationChunk, GenerationRequest

Endpoint = Literal["chat", "completions", "embeddings", "responses", "batch"]


@dataclass(slots=True)
class Principal:
    """Who is asking: the tenant and, with key auth, the key record (``app.policy``)."""

    tenant: str
    key_id: str | None = None
    key: Any = None  # app.policy.keys.KeyRecord when authenticated with a key
    tenant_record: Any = None  # app.policy.tenants.TenantRecord
    models: tuple[str, ...] | None = None  # allowed model names/globs; None = every model (auth off)


@dataclass(slots=True)
class Candidate:
    """One step the fallback chain may take: a pool or a provider, with the model it bills under."""

    name: str  # "pool:small", "pool:large", "provider:fake-openai", "stale_cache"
    model: str  # served model name (price-table key)
    kind: Literal["pool", "provider", "stale_cache"]


@dataclass
class Answer:
    """The answer as a stream of chunks, whatever produced it (pool, provider, stale or fresh cache).

    ``first`` is already there (the chain only returns once a step produced its first chunk);
    ``rest`` yields the remaining chunks. Output stages wrap ``rest``; the api layer renders it.
    """

    first: GenerationChunk
    rest: AsyncIterator[GenerationChunk]
    path: str  # x-llmgw-path: "pool:small", "providers", "stale_cache", "cache"
    source: Literal["generated", "cache", "stale_cache"] = "generated"
    cancel: Callable[[], None] | None = None  # aborts the upstream call (client went away)


@dataclass
class RequestContext:
    """Everything known about one request, filled stage by stage."""

    endpoint: Endpoint
    path: str  # HTTP path, the endpoint label in metrics
    headers: Mapping[str, str]  # lower-case request headers
    body: dict[str, Any] | None = None  # the JSON body (parse stage)
    started: float = field(default_factory=time.perf_counter)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    trace_id: str = ""

    # parse
    parsed: Any = None  # ChatCompletionRequest | CompletionRequest
    stream: bool = False
    include_usage: bool = False
    # authenticate
    principal: Principal | None = None
    # render prompt
    prompt_name: str | None = None  # "name@version" of a registry prompt (x-llmgw-prompt)
    prompt_version: str | None = None  # part of the cache scope
    variant: str | None = None  # A/B experiment variant
    # route
    gen: GenerationRequest | None = None  # what the backends run
    pool: str = ""  # the routed pool
    route_reason: str | None = None  # set for model "auto": the router's reason
    decision: Any = None  # app.route_decision.RouteDecision (score, embedding)
    candidates: list[Candidate] = field(default_factory=list)  # fallback order, filtered by key scope
    embedding: Any = None  # asyncio.Task -> (pool, RouteDecision | None): an explicit model's deferred embedding
    # tokens (counted once, by the target model's tokenizer)
    prompt_tokens: int = 0
    max_tokens: int = 0  # effective_max_tokens: the client's value, else min(default, context room)
    # guardrails
    guardrail_events: list[Any] = field(default_factory=list)
    # checks still running beside generation (app.pipeline.gates): no answer leaves before they pass
    gates: list[Any] = field(default_factory=list)  # asyncio.Task, each raising its GatewayError on a block
    # reserve / settle
    reservations: list[Any] = field(default_factory=list)  # released or settled exactly once at the end
    cost_usd: float | None = None
    savings_usd: float = 0.0  # a cache hit: what the answer would have cost
    price_version: str | None = None
    # cache
    cache_status: str = "bypass"  # hit-exact | hit-semantic | miss | bypass | stale
    cache_query: Any = None  # app.caching.keys.CacheQuery when the cache is used
    lookup: Any = None  # asyncio.Task -> Answer | None: a cache lookup racing the generation (overlap)
    # generate
    answer: Answer | None = None
    first_token_at: float | None = None
    # outcome (filled when the answer ended)
    final: GenerationChunk | None = None  # last chunk: finish reason and actual token counts
    text: str = ""  # the whole answer text as the client received it
    error: GatewayError | None = None
    aborted: bool = False  # the client went away before the end
    status: int = 200

    response_headers: dict[str, str] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # stage-private data, keyed by stage name
    _finishers: list[Callable[[RequestContext], Awaitable[None]]] = field(default_factory=list)

    @property
    def tenant(self) -> str:
        return self.principal.tenant if self.principal is not None else "default"

    @property
    def model(self) -> str:
        """The model the client asked for (``auto``, a pool name, an alias, a served name)."""
        return self.parsed.model if self.parsed is not None else ""

    def on_finish(self, callback: Callable[[RequestContext], Awaitable[None]]) -> None:
        """Run ``callback`` once when the answer ended (success, error or disconnect), newest first."""
        self._finishers.append(callback)
