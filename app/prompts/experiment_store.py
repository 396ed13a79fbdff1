"""Experiments in the registry's store: start/stop/status, the running experiment of a prompt (cached per
replica like prompt states), per-variant outcome counters and the shadow budget.

Keys (generic helpers of the store, under its prefix): ``x:<ns>:<name>`` (the experiment JSON),
``xa:<ns>:<prompt>`` (name of the running one), ``xs:<ns>`` (all names), ``xstat:<ns>:<name>:<variant>``
(counters), ``xspent:<ns>:<name>`` (shadow USD spent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.errors import ConflictError, InvalidRequestError, NotFoundError
from app.prompts.experiments import Experiment, ExperimentSpec, Target
from app.prompts.models import namespace
from app.prompts.registry import PromptRegistry

# Latency buckets (ms) for per-variant percentiles: upper bounds, the last one open.
LATENCY_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


@dataclass(slots=True)
class Outcome:
    """One finished request of a variant (what ``record_outcome`` counts)."""

    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: bool = False
    guardrail: bool = False  # a guardrail blocked or changed the request/answer
    score: float | None = None  # a judge score 0..1, when this request was judged


def _validation_error(exc: ValidationError) -> InvalidRequestError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "experiment"
    return InvalidRequestError(f"Invalid experiment at '{where}': {first['msg']}", param=where)


class Experiments:
    def __init__(self, registry: PromptRegistry, model_names: set[str] | None = None) -> None:
        self.registry = registry
        self.model_names = model_names  # what a variant's model may name (None: not checked here)
        self.store = registry.store
        self._active: dict[tuple[str, str], tuple[int, Experiment | None]] = {}

    # ---- admin ---------------------------------------------------------------------------------
    async def start(self, tenant: str | None, spec: Any, *, by: str = "") -> Experiment:
        try:
            spec = spec if isinstance(spec, ExperimentSpec) else ExperimentSpec.model_validate(spec)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        ns = namespace(tenant)
        await self.registry.get_version(tenant, spec.prompt, label=spec.label)  # 404 unless the label exists
        targets: list[Target] = [*spec.variants, *([spec.shadow] if spec.shadow else [])]
        for target in targets:
            if target.model is not None and self.model_names is not None and target.model not in self.model_names:
                raise InvalidRequestError(f"Unknown model '{target.model}' (models: "
                                          f"{', '.join(sorted(self.model_names))}).", param="variants")
            if target.version is not None or target.label is not None:
                await self.registry.get_version(tenant, spec.prompt, target.version, target.label)
        existing = await self.store.kv_get(f"x:{ns}:{spec.name}")
        if existing is not None and Experiment.model_validate_json(existing).status == "running":
            raise ConflictError(f"Experiment '{spec.name}' is already running.", param="name")
        running = await self.store.kv_get(f"xa:{ns}:{spec.prompt}")
        if running:
            raise ConflictError(f"Prompt '{spec.prompt}' already has a running experiment ('{running}'): stop it "
                                "first.", param="prompt")
        exp = Experiment(namespace=ns, started_by=by, **spec.model_dump())
        for key in (f"xstat:{ns}:{spec.name}:{v}" for v in [*(x.name for x in spec.variants), "shadow"]):
            await self.store.kv_delete(key)
        await self.store.kv_delete(f"xspent:{ns}:{spec.name}")
        await self.store.kv_set(f"x:{ns}:{spec.name}", exp.model_dump_json())
        await self.store.kv_set(f"xa:{ns}:{spec.prompt}", spec.name)
        await self.store.set_add(f"xs:{ns}", spec.name)
        await self.store.bump()
        self.registry.invalidate()
        self._active.clear()
        return exp

    async def get(self, tenant: str | None, name: str) -> Experiment:
        raw = await self.store.kv_get(f"x:{namespace(tenant)}:{name}")
        if raw is None:
            raise NotFoundError(f"Experiment '{name}' not found.", param="name", code="experiment_not_found")
        return Experiment.model_validate_json(raw)

    async def stop(self, tenant: str | None, name: str) -> Experiment:
        exp = await self.get(tenant, name)
        if exp.status == "running":
            exp.status, exp.stopped_at = "stopped", time.time()
            await self.store.kv_set(f"x:{exp.namespace}:{name}", exp.model_dump_json())
            if await self.store.kv_get(f"xa:{exp.namespace}:{exp.prompt}") == name:
                await self.store.kv_delete(f"xa:{exp.namespace}:{exp.prompt}")
            await self.store.bump()
            self.registry.invalidate()
            self._active.clear()
        return exp

    async def referencing(self, tenant: str | None, prompt: str, *, version: int | None = None,
                          label: str | None = None) -> str | None:
        """The running experiment of ``prompt`` that serves ``version`` or ``label`` (a variant's or the shadow's
        target, or the label it splits), read from the store; None when there is none."""
        ns = namespace(tenant)
        name = await self.store.kv_get(f"xa:{ns}:{prompt}")
        raw = await self.store.kv_get(f"x:{ns}:{name}") if name else None
        if raw is None:
            return None
        exp = Experiment.model_validate_json(raw)
        if exp.status != "running":
            return None
        targets: list[Target] = [*exp.variants, *([exp.shadow] if exp.shadow else [])]
        if version is not None and any(t.version == version for t in targets):
            return exp.name
        if label is not None and (label == exp.label or any(t.label == label for t in targets)):
            return exp.name
        return None

    async def list(self, tenant: str | None) -> list[dict[str, Any]]:
        out = []
        for name in await self.store.set_members(f"xs:{namespace(tenant)}"):
            exp = await self.get(tenant, name)
            out.append({"name": name, "prompt": exp.prompt, "status": exp.status, "started_at": exp.started_at})
        return out

    async def status(self, tenant: str | None, name: str) -> dict[str, Any]:
        """The experiment and, per variant (and the shadow), requests, latency, tokens, cost, rates, scores."""
        exp = await self.get(tenant, name)
        variants = [v.name for v in exp.variants] + (["shadow"] if exp.shadow else [])
        stats = {v: summarize(await self.store.hgetall(f"xstat:{exp.namespace}:{name}:{v}")) for v in variants}
        body: dict[str, Any] = {"experiment": exp.model_dump(), "variants": stats}
        if exp.shadow is not None:
            body["shadow_spent_usd"] = await self.shadow_spent(exp)
        return body

    # ---- hot path ------------------------------------------------------------------------------
    async def active(self, ns: str, prompt: str) -> Experiment | None:
        """The running experiment of ``prompt`` in namespace ``ns`` (cached; changes seen within refresh_s)."""
        await self.registry.refresh()
        known = self.registry.known_generation
        cached = self._active.get((ns, prompt))
        if cached is not None and cached[0] >= known:
            return cached[1]
        gen = await self.store.generation()  # read before the data: a change after it makes this entry stale
        name = await self.store.kv_get(f"xa:{ns}:{prompt}")
        exp = None
        if name:
            raw = await self.store.kv_get(f"x:{ns}:{name}")
            exp = Experiment.model_validate_json(raw) if raw else None
            if exp is not None and exp.status != "running":
                exp = None
        self._active[(ns, prompt)] = (gen, exp)
        return exp

    async def record_outcome(self, exp: Experiment, variant: str, outcome: Outcome) -> None:
        """Count one finished request of ``variant`` (called by the pipeline's finisher, never raises)."""
        amounts: dict[str, float] = {
            "requests": 1, "errors": int(outcome.error), "guardrail": int(outcome.guardrail),
            "latency_ms_sum": outcome.latency_ms, "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens, "cost_usd": outcome.cost_usd,
            f"lat_le_{_latency_bucket(outcome.latency_ms)}": 1,
        }
        if outcome.score is not None:
            amounts.update(score_sum=outcome.score, score_n=1)
        await self.store.hincr(f"xstat:{exp.namespace}:{exp.name}:{variant}", amounts)

    async def record_score(self, exp: Experiment, variant: str, score: float) -> None:
        await self.store.hincr(f"xstat:{exp.namespace}:{exp.name}:{variant}", {"score_sum": score, "score_n": 1})

    async def shadow_spent(self, exp: Experiment) -> float:
        return float(await self.store.kv_get(f"xspent:{exp.namespace}:{exp.name}") or 0.0)

    async def add_shadow_cost(self, exp: Experiment, usd: float) -> float:
        return await self.store.kv_incr(f"xspent:{exp.namespace}:{exp.name}", usd)


def _latency_bucket(ms: float) -> str:
    return next((str(b) for b in LATENCY_MS if ms <= b), "inf")


def summarize(raw: dict[str, str]) -> dict[str, Any]:
    """Counters -> the figures ``experiment status`` shows."""
    f = {k: float(v) for k, v in raw.items()}
    n = f.get("requests", 0.0)

    def rate(key: str) -> float | None:
        return round(f.get(key, 0.0) / n, 4) if n else None

    def percentile(q: float) -> str | None:
        if not n:
            return None
        seen = 0.0
        for b in (*map(str, LATENCY_MS), "inf"):
            seen += f.get(f"lat_le_{b}", 0.0)
            if seen >= q * n:
                return f"<= {b} ms" if b != "inf" else f"> {LATENCY_MS[-1]} ms"
        return None

    scored = f.get("score_n", 0.0)
    return {
        "requests": int(n), "error_rate": rate("errors"), "guardrail_rate": rate("guardrail"),
        "latency_ms_mean": round(f["latency_ms_sum"] / n, 1) if n else None,
        "latency_p50": percentile(0.5), "latency_p95": percentile(0.95),
        "prompt_tokens": int(f.get("prompt_tokens", 0)), "completion_tokens": int(f.get("completion_tokens", 0)),
        "cost_usd": round(f.get("cost_usd", 0.0), 6),
        "judge_score_mean": round(f["score_sum"] / scored, 4) if scored else None, "judged": int(scored),
    }
