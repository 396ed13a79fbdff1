"""Stage ``tokens``: count the prompt once with the routed pool's tokenizer; one ``effective_max_tokens``.

The client's ``max_tokens`` (or ``max_completion_tokens``) if given — refused when it cannot fit the
context — else the smaller of the configured default and what the context leaves. Every later stage
(limits, budgets, cache, engine) uses ``ctx.max_tokens``.
"""

from __future__ import annotations

from app.config import GatewayConfig
from app.errors import ContextLengthError
from app.pipeline.context import RequestContext
from app.tokens import TokenCounters


class CountTokens:
    name = "tokens"

    def __init__(self, config: GatewayConfig, counters: TokenCounters | None = None) -> None:
        self.config = config
        self.counters = counters or TokenCounters()

    async def __call__(self, ctx: RequestContext) -> None:
        pool = self.config.pool(ctx.pool)
        counter = self.counters.get(pool.engine.model)
        gen = ctx.gen
        ctx.prompt_tokens = (counter.count_chat(gen.messages, gen.tools) if gen.is_chat
                             else counter.count_text(gen.prompt or ""))
        limit = pool.engine.max_model_len
        room = limit - ctx.prompt_tokens
        asked = ctx.parsed.effective_max_tokens()
        if asked is not None:
            if counter.exact and asked > room:
                param = "max_completion_tokens" if getattr(ctx.parsed, "max_completion_tokens", None) else "max_tokens"
                raise ContextLengthError(
                    f"This model's maximum context length is {limit} tokens; you requested "
                    f"{ctx.prompt_tokens + asked} tokens ({ctx.prompt_tokens} in the prompt, {asked} for the "
                    f"completion). Reduce the prompt or '{param}'.", param=param)
            ctx.max_tokens = asked
        else:
            if counter.exact and room <= 0:
                param = "messages" if gen.is_chat else "prompt"
                raise ContextLengthError(
                    f"This model's maximum context length is {limit} tokens; the prompt has "
                    f"{ctx.prompt_tokens} tokens, leaving no room for a completion. Shorten the prompt.",
                    param=param)
            floor = gen.sampling.min_tokens  # an asked-for minimum lifts the default maximum
            if counter.exact and floor > room:
                raise ContextLengthError(
                    f"This model's maximum context length is {limit} tokens; the prompt has {ctx.prompt_tokens} "
                    f"tokens, leaving room for {room}, fewer than 'min_tokens' ({floor}).", param="min_tokens")
            ctx.max_tokens = max(1, floor, min(self.config.ingress.default_max_tokens, room))
        gen.sampling.max_tokens = ctx.max_tokens
