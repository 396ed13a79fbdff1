"""OpenAI-compatible request models (validated); the response builders are in app/response_bodies.py.

Every field of OpenAI's chat-completions and completions references is declared: honoured, or
refused with a 400 naming it (``param``) when set to a value this gateway cannot honour. A field
that is in neither reference nor :data:`GATEWAY_EXTENSIONS` is refused with ``unknown_parameter``
(docs/api.md has the table; docs/decisions.md the decision).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from app.api.chat_params import (
    ResponseFormat,
    Tool,
    ToolChoice,
    check_tools,
    response_format_dict,
)
from app.api.request_validation import validation_error  # noqa: F401 (re-exported: callers import it from here)
from app.errors import InvalidRequestError
from app.response_bodies import (  # noqa: F401 (re-exported: the response builders used to live here)
    chat_chunk,
    chat_logprobs,
    chat_response,
    completion_chunk,
    completion_logprobs,
    completion_response,
    message_tool_calls,
    usage,
)

MAX_TOKENS_LIMIT = 1_000_000  # anything above is absurd for any model we serve
MAX_TOP_LOGPROBS = 20
# Non-OpenAI top-level fields accepted: the gateway's own extensions (kept in ``model_extra``).
GATEWAY_EXTENSIONS = {
    "cache": "false bypasses the response cache",
    "prompt_ref": "a registry prompt: {name, version|label, variables} (docs/prompts.md)",
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _TopLevel(BaseModel):
    """A request body: unknown top-level fields are refused by name (400 ``unknown_parameter``)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields and key not in GATEWAY_EXTENSIONS:
                    raise InvalidRequestError(f"Unrecognized request argument supplied: '{key}'.", param=str(key),
                                              code="unknown_parameter")
        return data


def _refuse(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}' is not supported by this gateway: {why}.", param=param,
                               code="unsupported_parameter")


class TextPart(_Request):
    type: Literal["text"]
    text: str


class RefusalPart(_Request):
    type: Literal["refusal"]
    refusal: str


class _OtherPart(BaseModel):
    """image_url, input_audio, file...: refused with a 400 naming the part (text-only models)."""

    model_config = ConfigDict(extra="allow")
    type: str

    @field_validator("type")
    @classmethod
    def _not_text(cls, v: str) -> str:
        if v in ("text", "refusal"):
            raise ValueError(f"malformed '{v}' part")
        return v


class ToolCallFunction(_Request):
    name: str
    arguments: str


class MessageToolCall(_Request):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | RefusalPart | _OtherPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> ChatMessage:
        if isinstance(self.content, list):
            for part in self.content:
                if isinstance(part, RefusalPart) and self.role != "assistant":
                    raise ValueError("refusal parts are only allowed in assistant messages")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool messages need 'tool_call_id'")
        if self.role != "tool" and self.tool_call_id is not None:
            raise ValueError("'tool_call_id' is only allowed in tool messages")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("'tool_calls' is only allowed in assistant messages")
        if self.content is None and self.role != "assistant":
            raise ValueError("'content' is required")
        if self.role == "assistant" and self.content is None and not self.tool_calls and self.refusal is None:
            raise ValueError("assistant messages need 'content' or 'tool_calls'")
        return self

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text if isinstance(p, TextPart) else getattr(p, "refusal", "") for p in self.content)
        return self.content or ""

    def to_generation(self) -> dict[str, Any]:
        """The message as GenerationRequest.messages holds it (text content; tool_calls / tool_call_id kept)."""
        out: dict[str, Any] = {"role": self.role, "content": self.text()}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


class StreamOptions(_Request):
    include_usage: StrictBool = False
    include_obfuscation: StrictBool | None = None  # no obfuscation padding is added: accepted, documented


class _SamplingFields(_TopLevel):
    model: str = Field(min_length=1)
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: StrictFloat | None = Field(default=None, ge=0.0, le=2.0)
    top_p: StrictFloat | None = Field(default=None, gt=0.0, le=1.0)
    n: StrictInt | None = Field(default=None, ge=1, le=128)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: StrictInt | None = None
    presence_penalty: StrictFloat | None = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: StrictFloat | None = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, StrictFloat] | None = None
    user: str | None = None
    cache: StrictBool | None = None  # gateway extension: false bypasses the response cache
    # vLLM's extra sampling parameters (its OpenAI server takes them too): fixed-length answers for load tests
    ignore_eos: StrictBool | None = None
    min_tokens: StrictInt | None = Field(default=None, ge=0, le=MAX_TOKENS_LIMIT)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (v or {}).items():
            if not key.isdigit():
                raise ValueError(f"keys must be token ids, got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases must be within -100..100, got {bias}")
        return v or None

    @model_validator(mode="after")
    def _sampling_refusals(self) -> _SamplingFields:
        if self.n not in (None, 1):
            raise _refuse("n", "only one choice per request (n = 1); send several requests")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequestError("'stream_options' is only allowed when 'stream' is true.",
                                      param="stream_options")
        if self.stream_options is not None and self.stream_options.include_obfuscation:
            raise _refuse("stream_options.include_obfuscation", "no obfuscation padding is added")
        self.stream = bool(self.stream)
        asked = self.effective_max_tokens()
        if self.min_tokens and asked is not None and self.min_tokens > asked:
            raise InvalidRequestError(f"'min_tokens' ({self.min_tokens}) must not exceed the maximum of {asked} "
                                      "tokens asked for.", param="min_tokens")
        if self.presence_penalty is None:
            self.presence_penalty = 0.0
        if self.frequency_penalty is None:
            self.frequency_penalty = 0.0
        return self

    def effective_max_tokens(self) -> int | None:
        return self.max_tokens

    def vllm_fields(self) -> dict[str, Any]:
        """vLLM's extras for SamplingOptions (only when set: a plain request's cache key is unchanged)."""
        return {"ignore_eos": bool(self.ignore_eos), "min_tokens": self.min_tokens or 0}

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def extensions(self) -> dict[str, Any]:
        """Gateway extension fields the client sent (``GATEWAY_EXTENSIONS``), e.g. ``prompt_ref``."""
        return dict(self.model_extra or {})


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(default_factory=list)  # may be empty only with a ``prompt_ref``
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = Field(default=None, discriminator="type")
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    # Informational: accepted, no effect on the answer.
    metadata: dict[str, str] | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    # Accepted only at their no-op values; anything else is refused by name.
    store: StrictBool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _chat_refusals(self) -> ChatCompletionRequest:
        if not self.messages and "prompt_ref" not in (self.model_extra or {}):
            raise InvalidRequestError("'messages' must hold at least one message (or name a 'prompt_ref').",
                                      param="messages")
        for i, m in enumerate(self.messages):
            for j, part in enumerate(m.content if isinstance(m.content, list) else ()):
                if isinstance(part, _OtherPart):
                    raise _refuse(f"messages.{i}.content.{j}.type", f"content parts of type '{part.type}' "
                                  "(the models are text-only)")
            if m.audio is not None:
                raise _refuse(f"messages.{i}.audio", "audio messages")
            if m.function_call is not None:
                raise _refuse(f"messages.{i}.function_call", "deprecated function calling; use tool_calls")
        if self.store:
            raise _refuse("store", "stored completions are not kept (store: false only)")
        if self.service_tier not in (None, "auto", "default"):
            raise _refuse("service_tier", "one service tier ('auto' / 'default')")
        if self.modalities is not None and self.modalities != ["text"]:
            raise _refuse("modalities", "text output only (['text'])")
        for name, why in (("audio", "audio output"), ("prediction", "predicted outputs"),
                          ("reasoning_effort", "the models do not reason"), ("verbosity", "no verbosity control"),
                          ("web_search_options", "no web search"),
                          ("functions", "deprecated function calling; use 'tools'"),
                          ("function_call", "deprecated function calling; use 'tool_choice'")):
            if getattr(self, name) is not None:
                raise _refuse(name, why)
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequestError("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
        if self.parallel_tool_calls is not None and not self.tools:
            raise InvalidRequestError("'parallel_tool_calls' is only allowed when 'tools' are specified.",
                                      param="parallel_tool_calls")
        forced_tool = bool(self.tools) and self.tool_choice not in (None, "none", "auto")
        if self.response_format is not None and forced_tool:
            raise InvalidRequestError("'response_format' cannot be combined with a forced 'tool_choice'.",
                                      param="response_format")
        self._tools, self._tool_choice = check_tools(self.tools, self.tool_choice, self.parallel_tool_calls)
        self._structured = response_format_dict(self.response_format)
        for name in ("ignore_eos", "min_tokens"):  # guided decoding ends on the grammar's end token: keep it
            if getattr(self, name) and (self._structured is not None or forced_tool):
                raise InvalidRequestError(f"'{name}' cannot be combined with 'response_format' or a forced "
                                          "'tool_choice' (the grammar's end must end the answer).", param=name)
        return self

    def effective_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def engine_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def generation_fields(self) -> dict[str, Any]:
        """Keyword arguments for GenerationRequest (messages with tool history, tools, tool_choice)."""
        return {"messages": [m.to_generation() for m in self.messages], "tools": self._tools,
                "tool_choice": self._tool_choice, "parallel_tool_calls": self.parallel_tool_calls}

    def sampling_fields(self) -> dict[str, Any]:
        """Keyword arguments for SamplingOptions beyond the basic ones (structured, logprobs, logit_bias)."""
        return {"structured": self._structured, "logprobs": self.engine_logprobs(), "logit_bias": self.logit_bias,
                **self.vllm_fields()}

    _tools: Any = None
    _tool_choice: Any = None
    _structured: Any = None


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    echo: StrictBool | None = False
    logprobs: StrictInt | None = Field(default=None, ge=0, le=5)
    best_of: StrictInt | None = Field(default=None, ge=1, le=20)
    suffix: str | None = None

    @model_validator(mode="after")
    def _completion_refusals(self) -> CompletionRequest:
        if self.echo:
            raise _refuse("echo", "the prompt is not echoed back")
        if self.best_of not in (None, 1):
            raise _refuse("best_of", "best_of = 1 only")
        if self.suffix is not None:
            raise _refuse("suffix", "no insertion (suffix) mode")
        if isinstance(self.prompt, list) and self.prompt and not isinstance(self.prompt[0], str):
            raise _refuse("prompt", "token-id prompts (send text)")
        return self

    def prompt_text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise InvalidRequestError("only a single prompt per request is supported", param="prompt")
            return str(self.prompt[0])
        return self.prompt

    def generation_fields(self) -> dict[str, Any]:
        return {"prompt": self.prompt_text()}

    def sampling_fields(self) -> dict[str, Any]:
        return {"logprobs": self.logprobs, "logit_bias": self.logit_bias, **self.vllm_fields()}
