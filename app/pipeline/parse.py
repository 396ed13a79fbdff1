"""Stage ``parse``: the JSON body into a validated OpenAI request model, or a 400 naming the field."""

from __future__ import annotations

from pydantic import ValidationError

from app.config import GatewayConfig
from app.errors import ModelNotFoundError
from app.pipeline.context import RequestContext
from app.schemas import ChatCompletionRequest, CompletionRequest, validation_error

_MODELS = {"chat": ChatCompletionRequest, "completions": CompletionRequest}


class Parse:
    name = "parse"

    def __init__(self, config: GatewayConfig) -> None:
        self.names = config.model_names()

    async def __call__(self, ctx: RequestContext) -> None:
        model = _MODELS[ctx.endpoint]
        try:
            parsed = model.model_validate(ctx.body or {})
        except ValidationError as exc:
            raise validation_error(exc) from None
        if parsed.model not in self.names:
            valid = ", ".join(sorted(self.names))
            raise ModelNotFoundError(f"The model '{parsed.model}' does not exist. Valid models: {valid}.",
                                     param="model")
        ctx.parsed = parsed
        ctx.stream = parsed.stream
        ctx.include_usage = parsed.include_usage
