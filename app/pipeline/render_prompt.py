"""Stage ``render_prompt`` and finisher ``prompt_outcome``: registry prompts in the request path.

``render_prompt`` (after authenticate, before route) resolves the body's ``prompt_ref`` in the
tenant's namespace (then the global one), picks the A/B variant of a running experiment, renders the
template strictly and puts its messages before the client's; the template's model (for ``auto``)
and sampling fill what the client left unset. It sets ``x-llmgw-prompt: name@version`` (and
``x-llmgw-variant``), ``ctx.prompt_version`` (cache scope) and ``evaluation.prompt`` in the log.

``prompt_outcome`` (a finisher, after cost) counts the request per prompt version and variant, adds
it to the experiment's stats, and hands a sampled request to the shadow runner — all in background
tasks: nothing here delays or fails the served answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from app.config import GatewayConfig
from app.errors import GatewayError, InvalidRequestError, ServiceUnavailableError
from app.observability import metrics
from app.pipeline.context import RequestContext
from app.prompts.experiment_store import Experiments, Outcome
from app.prompts.experiments import Experiment
from app.prompts.models import PromptVersion
from app.prompts.ref import PromptRef, parse_prompt_ref
from app.prompts.registry import PromptRegistry
from app.prompts.shadow import InFlight, ShadowJob, ShadowRunner, ShadowTicket
from app.prompts.template import render
from app.schemas import ChatMessage

logger = logging.getLogger(__name__)
USER_HEADER = "x-llmgw-user"
_IN_FLIGHT = "prompt_in_flight"  # ctx.extras: the InFlight this request entered (the outcome finisher leaves it)


@dataclass(slots=True)
class PromptUse:
    """What the render stage decided, for the finisher (``ctx.extras["render_prompt"]``)."""

    version: PromptVersion
    ref: PromptRef
    template_messages: int
    experiment: Experiment | None = None
    variant: str | None = None
    shadow: bool = False


def assignment_key(ctx: RequestContext, kind: str) -> str:
    """The A/B key: the end user (``user`` / ``safety_identifier`` / x-llmgw-user), the tenant or the request."""
    if kind == "tenant":
        return ctx.tenant
    if kind == "user":
        parsed = ctx.parsed
        user = getattr(parsed, "user", None) or getattr(parsed, "safety_identifier", None) \
            or ctx.headers.get(USER_HEADER)
        if user:
            return f"{ctx.tenant}/{user}"
    return ctx.request_id  # "request", or no user given: not sticky, still unbiased


class RenderPrompt:
    name = "render_prompt"

    def __init__(self, config: GatewayConfig, registry: PromptRegistry, experiments: Experiments | None,
                 inflight: InFlight | None = None) -> None:
        self.inflight = inflight or InFlight()  # every request reaching this stage, for the shadows' gaps
        self.registry = registry
        self.experiments = experiments
        self.names = config.model_names()
        self.default_label = config.prompts.default_label

    async def __call__(self, ctx: RequestContext) -> None:
        if _IN_FLIGHT not in ctx.extras:
            self.inflight.enter()
            ctx.extras[_IN_FLIGHT] = self.inflight
        raw = (ctx.body or {}).get("prompt_ref")
        if raw is None:
            return
        if ctx.endpoint != "chat":
            raise InvalidRequestError("'prompt_ref' is only supported on /v1/chat/completions.", param="prompt_ref")
        ref = parse_prompt_ref(raw)
        try:
            use = await self._resolve(ctx, ref)
        except GatewayError:
            raise
        except Exception as exc:  # the store is unreachable: a 503, not a silent fallback
            logger.warning("prompt registry unavailable: %s", type(exc).__name__)
            raise ServiceUnavailableError("The prompt registry is unavailable; retry shortly.",
                                          headers={"Retry-After": "1"}, code="prompt_registry_unavailable") from None
        self._apply(ctx, use)

    async def _resolve(self, ctx: RequestContext, ref: PromptRef) -> PromptUse:
        label = ref.label or self.default_label
        ns, state = await self.registry.find(ctx.tenant, ref.name)
        experiment = variant = None
        model = None
        version_num, version_label = ref.version, ref.label
        if ref.version is None and self.experiments is not None:
            exp = await self.experiments.active(ns, ref.name)
            if exp is not None and exp.label == label:
                experiment = exp
                chosen = exp.assign(assignment_key(ctx, exp.key))
                if chosen is not None:
                    variant, model = chosen.name, chosen.model
                    if chosen.version is not None or chosen.label is not None:
                        version_num, version_label = chosen.version, chosen.label
        pv = await self.registry.resolve_in(ns, ref.name, state, version_num, version_label)
        if model is not None:
            self._check_model(model, pv, "experiment variant")
            ctx.parsed.model = model
        shadow = experiment is not None and experiment.shadow_sampled(ctx.request_id)
        return PromptUse(pv, ref, len(pv.template.messages), experiment, variant, shadow)

    def _check_model(self, model: str, pv: PromptVersion, what: str) -> None:
        if model not in self.names:
            raise InvalidRequestError(f"The {what} of prompt '{pv.name}' names the model '{model}', which this "
                                      "gateway does not serve.", param="prompt_ref", code="prompt_model_not_found")

    def _apply(self, ctx: RequestContext, use: PromptUse) -> None:
        pv, parsed = use.version, ctx.parsed
        template = pv.template
        rendered = render(template, use.ref.variables)
        parsed.messages = [ChatMessage.model_validate(m) for m in rendered] + list(parsed.messages or [])
        sent = parsed.model_fields_set
        if template.model and use.variant is None and self.names.get(parsed.model) == "":  # client sent "auto"
            self._check_model(template.model, pv, "default model")
            parsed.model = template.model
        s = template.sampling
        for name in ("temperature", "top_p", "seed"):
            if getattr(s, name) is not None and name not in sent:
                setattr(parsed, name, getattr(s, name))
        if s.stop is not None and "stop" not in sent:
            parsed.stop = list(s.stop)
        if s.max_tokens is not None and not {"max_tokens", "max_completion_tokens"} & sent:
            parsed.max_tokens = s.max_tokens
        ctx.prompt_name = pv.ref
        ctx.prompt_version = f"{pv.namespace}/{pv.ref}"
        ctx.variant = use.variant
        ctx.response_headers["x-llmgw-prompt"] = pv.ref
        if use.experiment is not None and use.variant is not None:
            ctx.response_headers["x-llmgw-variant"] = use.variant
            ctx.response_headers["x-llmgw-experiment"] = use.experiment.name
        ctx.extras["render_prompt"] = use
        ctx.extras.setdefault("evaluation", {})["prompt"] = {
            "name": pv.name, "version": pv.version, "namespace": pv.namespace, "ref": pv.ref,
            "experiment": use.experiment.name if use.experiment is not None else None, "variant": use.variant,
        }


class PromptOutcome:
    """Finisher: per-version metrics, experiment stats, shadow submission (background, never raises)."""

    name = "prompt_outcome"

    def __init__(self, config: GatewayConfig, experiments: Experiments | None,
                 shadow: ShadowRunner | None = None) -> None:
        self.experiments = experiments
        self.shadow = shadow
        self.names = config.model_names()
        self.registry = experiments.registry if experiments is not None else None
        self.tasks: set[asyncio.Task] = set()

    async def __call__(self, ctx: RequestContext) -> None:
        held: InFlight | None = ctx.extras.pop(_IN_FLIGHT, None)
        if held is not None:
            held.leave()  # the served answer is done: shadows may use the gap
        use: PromptUse | None = ctx.extras.get("render_prompt")
        if use is None:
            return
        status = "499" if ctx.aborted and ctx.error is None else str(ctx.status)
        metrics.PROMPT_REQUESTS.labels(use.version.name, str(use.version.version), use.variant or "-", status).inc()
        if use.experiment is not None and use.variant is not None and self.experiments is not None:
            last = ctx.final
            outcome = Outcome(latency_ms=(time.perf_counter() - ctx.started) * 1000,
                              prompt_tokens=last.prompt_tokens if last is not None else 0,
                              completion_tokens=last.completion_tokens if last is not None else 0,
                              cost_usd=ctx.cost_usd or 0.0, error=ctx.error is not None or ctx.aborted,
                              guardrail=bool(ctx.guardrail_events))
            self._background(self.experiments.record_outcome(use.experiment, use.variant, outcome))
        if use.shadow and self.shadow is not None and ctx.error is None and not ctx.aborted and ctx.gen is not None:
            self.shadow.submit(self._shadow_job(ctx, use))

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._quiet(coro))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _quiet(coro: Any) -> None:
        try:
            await coro
        except Exception:
            logger.warning("recording a prompt experiment outcome failed", exc_info=True)

    def _shadow_job(self, ctx: RequestContext, use: PromptUse) -> ShadowJob:
        spec = use.experiment.shadow
        pool = (self.names.get(spec.model) or ctx.pool) if spec.model else ctx.pool
        ticket = ShadowTicket(use.experiment, ctx.gen, ctx.text, use.variant, use.version.name, use.version.version,
                              dict(use.ref.variables or {}), use.template_messages, pool)
        return ticket.job(self.registry, served_version=use.version)  # job.ticket: the same, as data


@dataclass(slots=True)
class PromptWiring:
    """Everything the ingress wires for prompts: the stage, the finisher, the online evaluator."""

    registry: PromptRegistry
    experiments: Experiments
    render: RenderPrompt
    outcome: PromptOutcome
    shadow: ShadowRunner | None
    online: Any = None  # app.evaluation.online.OnlineEvaluator when evaluation.online is on and a judge is set
    config: GatewayConfig | None = None
    judge: Any = None  # app.evaluation.judge.Judge when evaluation.judge is set
    request_log: Any = None

    def attach_shadow(self, generate: Any) -> ShadowRunner:
        """Enable shadow runs once the backends exist: ``generate(GenerationRequest) -> GenerationChunk | str``
        (``request.model`` is a pool name), e.g. ``lambda req: pools.generate(req.model, req)``."""
        cfg = self.config.prompts.shadow if self.config is not None else None
        self.shadow = ShadowRunner(generate, self.experiments, request_log=self.request_log, judge=self.judge,
                                   max_concurrency=cfg.max_concurrency if cfg else 4,
                                   timeout_s=cfg.timeout_s if cfg else 60.0,
                                   start_delay_s=cfg.start_delay_s if cfg else 0.0,
                                   max_pending=cfg.max_pending if cfg else 256,
                                   served=self.render.inflight, yield_max_s=cfg.yield_max_s if cfg else 0.0)
        self.outcome.shadow = self.shadow
        return self.shadow


def build_prompt_wiring(config: GatewayConfig, request_log: Any = None, shadow_generate: Any = None,
                        store: Any = None) -> PromptWiring | None:
    """The registry on ``redis.url`` (in memory without it), experiments, shadow runner (when the caller
    gives ``shadow_generate(GenerationRequest) -> GenerationChunk | str``; its ``model`` is a pool name) and
    online evaluator (``evaluation.online.enabled`` + ``evaluation.judge``). None when prompts are off."""
    from app.evaluation.judge import Judge
    from app.evaluation.online import OnlineEvaluator
    from app.prompts.registry import build_store

    if not config.prompts.enabled:
        return None
    registry = PromptRegistry(store or build_store(config.redis.url, config.prompts), config.prompts)
    experiments = Experiments(registry, set(config.model_names()))
    ev = config.evaluation
    judge = Judge(ev.judge) if ev.judge is not None else None
    inflight = InFlight()
    shadow = None
    if shadow_generate is not None:
        shadow = ShadowRunner(shadow_generate, experiments, request_log=request_log, judge=judge,
                              max_concurrency=config.prompts.shadow.max_concurrency,
                              timeout_s=config.prompts.shadow.timeout_s,
                              start_delay_s=config.prompts.shadow.start_delay_s,
                              max_pending=config.prompts.shadow.max_pending, served=inflight,
                              yield_max_s=config.prompts.shadow.yield_max_s)
    online = None
    if judge is not None and ev.online.enabled and request_log is not None:
        online = OnlineEvaluator(judge, ev.online, request_log, experiments)
    return PromptWiring(registry, experiments, RenderPrompt(config, registry, experiments, inflight),
                        PromptOutcome(config, experiments, shadow), shadow, online, config, judge, request_log)
