"""vLLM ``AsyncLLM`` driven in-process: one engine per pool replica.

Continuous batching comes from the engine; each request gets its own ``SamplingParams``; outputs
are streamed as deltas (``RequestOutputKind.DELTA``, which also coalesces tokens when the reader
falls behind). When the consumer is cancelled (client disconnect), ``AsyncLLM.generate`` aborts
the request in the engine; we count those aborts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from app.config import PoolConfig
from app.errors import ContextLengthError, InvalidRequestError, UpstreamError
from app.generation import GenerationChunk, GenerationRequest


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
            **eng.extra_args,
        )
        self.engine = AsyncLLM.from_engine_args(args)
        self.tokenizer = self.engine.get_tokenizer()
        self.model_name = eng.name
        self.max_model_len = eng.max_model_len
        self.counters = {"requests": 0, "aborted": 0, "failed": 0}

    def _prompt_ids(self, req: GenerationRequest) -> list[int]:
        if req.messages is not None:
            text = self.tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False)
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
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            stop=s.stop or None,
            seed=s.seed,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            output_kind=RequestOutputKind.DELTA,
        )

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        ids = self._prompt_ids(req)
        params = self._sampling_params(req, len(ids))
        self.counters["requests"] += 1
        completion = 0
        try:
            async for out in self.engine.generate({"prompt_token_ids": ids}, params, req.request_id):
                o = out.outputs[0]
                completion += len(o.token_ids)
                finish = o.finish_reason if out.finished else None
                if finish not in (None, "stop", "length"):
                    finish = "stop"
                yield GenerationChunk(o.text, finish, len(ids), completion, self.model_name)
        except (asyncio.CancelledError, GeneratorExit):
            self.counters["aborted"] += 1
            raise
        except Exception as exc:  # engine errors -> retryable upstream error, input errors -> 400
            from vllm.exceptions import VLLMClientError

            self.counters["failed"] += 1
            if isinstance(exc, VLLMClientError):
                raise InvalidRequestError(str(exc)) from None
            raise UpstreamError(f"model pool engine error: {type(exc).__name__}") from exc

    async def check_health(self) -> None:
        await self.engine.check_health()

    def stats(self) -> dict[str, int]:
        return {**self.counters, "running": self.engine.get_num_unfinished_requests()}

    def shutdown(self) -> None:
        self.engine.shutdown()
