"""The backend-neutral GenerationRequest from a validated OpenAI request (one place for the mapping)."""

from __future__ import annotations

from app.generation import GenerationRequest, SamplingOptions
from app.schemas import ChatCompletionRequest, CompletionRequest

DEFAULT_TEMPERATURE = 1.0  # OpenAI's default: what an omitted temperature samples at (and what the cache sees)
DEFAULT_TOP_P = 1.0


def effective_temperature(parsed: ChatCompletionRequest | CompletionRequest) -> float:
    return DEFAULT_TEMPERATURE if parsed.temperature is None else parsed.temperature


def generation_request(parsed: ChatCompletionRequest | CompletionRequest, rid: str, tenant: str) -> GenerationRequest:
    """``max_tokens`` is left to the tokens stage (``effective_max_tokens``)."""
    sampling = SamplingOptions(
        max_tokens=None,
        temperature=effective_temperature(parsed),
        top_p=DEFAULT_TOP_P if parsed.top_p is None else parsed.top_p,
        stop=parsed.stop_list(),
        seed=parsed.seed,
        presence_penalty=parsed.presence_penalty,
        frequency_penalty=parsed.frequency_penalty,
        **parsed.sampling_fields(),  # structured output, logprobs, logit_bias
    )
    # chat: messages with tool history, tools, tool_choice, parallel_tool_calls; completions: the prompt
    return GenerationRequest(rid, parsed.model, sampling=sampling, tenant=tenant, **parsed.generation_fields())
