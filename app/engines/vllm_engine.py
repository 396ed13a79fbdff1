"""vLLM ``AsyncLLM`` driven in-process: one engine per pool replica.

Continuous batching comes from the engine; each request gets its own ``SamplingParams``; outputs
are streamed as deltas (``RequestOutputKind.DELTA``, which also coalesces tokens when the reader
falls behind). When the consumer is cancelled (client disconnect), ``AsyncLLM.generate`` aborts
the request in the engine; we count those aborts.

Structured output and forced tool choices decode under vLLM's structured outputs (xgrammar, no
free whitespace between JSON tokens); ``tool_choice: auto`` answers are read by the pool's vLLM tool
parser; ``logprobs`` come from the sampler. A whitespace guard ends a guided answer that loops on
whitespace inside a string (vLLM #38696) with ``finish_reason: length``; tokens with raw control
characters are banned while decoding JSON (xgrammar would let them into strings).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from app.config import PoolConfig
from app.engines.chat_prompt import render_chat
from app.engines.logprobs import openai_logprobs
from app.engines.tool_output import ToolOutput, make_parser
from app.errors import ContextLengthError, InvalidRequestError, UpstreamError
from app.generation import GenerationChunk, GenerationRequest
from app.observability import metrics
from app.structured.decode_schema import decoding_schema
from app.structured.tool_schema import guided_schema, tool_mode
from app.structured.validate import schema_of

MAX_WHITESPACE_RUN = 64  # a guided answer with this many whitespace characters in a row is looping
STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}


class VLLMEngine:
    def __init__(self, pool: PoolConfig) -> None:
        for key, value in pool.env.items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        eng = pool.engine
        args = AsyncEngineArgs(
            model=eng.model,
            served_model_name=eng.name,
            quantization=eng.quantization,
            max_model_len=eng.max_model_len,
            tensor_parallel_size=eng.tensor_parallel_size,
            dtype=eng.dtype,
            enforce_eager=eng.enforce_eager,
            gpu_memory_utilization=eng.gpu_memory_utilization,
            max_num_seqs=eng.max_num_seqs,
            **{"structured_outputs_config": dict(STRUCTURED_OUTPUTS), **eng.extra_args},
        )
        self.engine = AsyncLLM.from_engine_args(args)
        self.tokenizer = self.engine.get_tokenizer()
        self.model_name = eng.name
        self.max_model_len = eng.max_model_len
        self.vocab_size = len(self.tokenizer)
        self.tool_parser = pool.tool_parser
        from vllm.tool_parsers.abstract_tool_parser import ToolParserManager

        ToolParserManager.get_tool_parser(self.tool_parser)  # an unknown parser name fails at start, not per request
        self.counters = {"requests": 0, "aborted": 0, "failed": 0, "guided": 0, "whitespace_guard": 0}
        # engine.extra_args scheduling_policy: priority -> stream(priority=n) orders the waiting queue (lower first)
        self.priority_scheduling = eng.extra_args.get("scheduling_policy") == "priority"
        self._control_ids: list[int] | None = None  # tokens with raw control characters (see _guided_bias)

    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        if req.messages is not None:
            text = render_chat(self.tokenizer, req.messages, req.tools)
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        return list(self.tokenizer.encode(req.prompt or ""))

    def _sampling_params(self, req: GenerationRequest, prompt_len: int):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        s = req.sampling
        room = self.max_model_len - prompt_len
        if room <= 0:
            raise ContextLengthError(
                f"This model's maximum context length is {self.max_model_len} tokens; "
                f"the prompt has {prompt_len} tokens.",
                param="messages" if req.is_chat else "prompt",
            )
        max_tokens = s.max_tokens if s.max_tokens is not None else room
        if max_tokens > room:
            raise ContextLengthError(
                f"This model's maximum context length is {self.max_model_len} tokens; you requested "
                f"{prompt_len + max_tokens} tokens ({prompt_len} in the prompt, {max_tokens} for the completion).",
                param="max_tokens",
            )
        structured = self._structured(req)
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            stop=s.stop or None,
            seed=s.seed,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            ignore_eos=s.ignore_eos,
            min_tokens=min(s.min_tokens, max_tokens),
            logprobs=s.logprobs,
            logit_bias=self._guided_bias(self._logit_bias(s.logit_bias), structured is not None),
            structured_outputs=structured,
            skip_special_tokens=tool_mode(req.tools, req.tool_choice) != "auto",
            output_kind=RequestOutputKind.DELTA,
        )

    def _logit_bias(self, bias: dict[str, float] | None) -> dict[int, float] | None:
        if not bias:
            return None
        out = {int(k): float(v) for k, v in bias.items()}
        bad = [k for k in out if k >= self.vocab_size]
        if bad:
            raise InvalidRequestError(f"logit_bias token id {bad[0]} is outside this model's vocabulary "
                                      f"(0..{self.vocab_size - 1}).", param="logit_bias")
        return out

    def _guided_bias(self, bias: dict[int, float] | None, guided: bool) -> dict[int, float] | None:
        """Guided JSON: ban tokens holding raw control characters (U+0000-U+001F). xgrammar 0.2.8 lets them
        into JSON strings, where RFC 8259 forbids them (``json.loads`` and the SDKs reject the answer)."""
        if not guided:
            return bias
        if self._control_ids is None:
            texts = self.tokenizer.batch_decode([[i] for i in range(self.vocab_size)])
            specials = set(getattr(self.tokenizer, "all_special_ids", ()))
            self._control_ids = [i for i, t in enumerate(texts)
                                 if i not in specials and any(ord(c) < 0x20 for c in t)]
        return {**dict.fromkeys(self._control_ids, -100.0), **(bias or {})}

    def _structured(self, req: GenerationRequest):
        """Guided decoding: a forced tool choice's schema, else the response_format's."""
        from vllm.sampling_params import StructuredOutputsParams

        schema = guided_schema(req.tools, req.tool_choice, req.parallel_tool_calls)
        if schema is None and req.response_format is not None:
            if req.response_format.get("type") == "json_object":
                return StructuredOutputsParams(json_object=True)
            schema = schema_of(req.response_format)
        return None if schema is None else StructuredOutputsParams(json=decoding_schema(schema))

    def _tool_output(self, req: GenerationRequest) -> ToolOutput | None:
        mode = tool_mode(req.tools, req.tool_choice)
        if mode is None:
            return None
        parser = request = None
        if mode == "auto":
            parser, request = make_parser(self.tool_parser, self.tokenizer, self.model_name, req.tools or [])
        return ToolOutput(mode, req.tool_choice, parser, request)

    async def stream(self, req: GenerationRequest, priority: int = 0) -> AsyncIterator[GenerationChunk]:
        """``priority`` (vLLM's: lower is scheduled first, served requests 0) only with priority scheduling."""
        ids = self._prompt_ids(req)
        params = self._sampling_params(req, len(ids))
        tools = self._tool_output(req)
        guided = params.structured_outputs is not None
        self.counters["requests"] += 1
        self.counters["guided"] += guided
        completion, ws_run = 0, 0
        try:
            extra = {"priority": priority} if priority and self.priority_scheduling else {}
            async for out in self.engine.generate({"prompt_token_ids": ids}, params, req.request_id, **extra):
                o = out.outputs[0]
                completion += len(o.token_ids)
                finish = o.finish_reason if out.finished else None
                if finish not in (None, "stop", "length"):
                    finish = "stop"
                if guided:
                    ws_run = _whitespace_run(ws_run, o.text)
                    if ws_run >= MAX_WHITESPACE_RUN and finish is None:
                        self.counters["whitespace_guard"] += 1
                        finish = "length"
                        await self.engine.abort(req.request_id)
                logprobs = None
                if params.logprobs is not None:
                    logprobs = openai_logprobs(o.token_ids, o.logprobs, params.logprobs, self._decode)
                text, calls = (o.text, None) if tools is None else tools.feed(o.text, o.token_ids)
                if finish is not None and tools is not None:
                    rest, more = tools.finish()
                    text, calls = text + rest, (calls or []) + (more or []) or None
                    finish = tools.finish_reason(finish)
                yield GenerationChunk(text, finish, len(ids), completion, self.model_name, calls, logprobs)
                if finish is not None:
                    break
        except (asyncio.CancelledError, GeneratorExit):
            self.counters["aborted"] += 1
            raise
        except Exception as exc:  # engine errors -> retryable upstream error, input errors -> 400
            from vllm.exceptions import VLLMClientError

            self.counters["failed"] += 1
            if isinstance(exc, VLLMClientError):
                raise InvalidRequestError(str(exc)) from None
            raise UpstreamError(f"model pool engine error: {type(exc).__name__}") from exc

    def _decode(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    async def check_health(self) -> None:
        await self.engine.check_health()

    def stats(self) -> dict[str, int]:
        return {**self.counters, "running": self.engine.get_num_unfinished_requests()}

    def shutdown(self) -> None:
        """The pool replica is going away (its ``__del__``): stop vLLM, drop its live gauges from /metrics."""
        self.engine.shutdown()
        metrics.mark_process_dead()


def _whitespace_run(run: int, text: str) -> int:
    """Length of the whitespace run at the end of the output so far, after ``text`` was appended."""
    stripped = text.rstrip()
    if stripped:
        return len(text) - len(stripped)
    return run + len(text)
