"""Output stage ``structured_output``: the final text of a response_format request is validated
(draft 2020-12); a violation is re-asked once with the validator's errors, then 502
``json_schema_validation_failed``. Streams cannot be re-asked (the text is out): a violation ends
the stream with that error event. ``finish_reason: length`` stays a 200 with verdict ``truncated``.
Unary answers carry the verdict in ``x-llmgw-schema``. Tool calls of ``strict`` functions are
checked the same way against their parameters.

Duck-typed to the pipeline's OutputStage (``wrap(ctx, answer) -> answer``); ``regenerate(ctx)`` is
the generate stage (it runs ``ctx.gen`` and sets ``ctx.answer``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from app.generation import GenerationChunk, merge_chunks
from app.observability import metrics
from app.structured.tool_schema import find_tool
from app.structured.validate import HEADER, Verdict, reask_messages, schema_of, validate_text, validation_failed


def check_answer(whole: GenerationChunk, response_format: dict[str, Any] | None,
                 tools: list[dict[str, Any]] | None) -> Verdict | None:
    """The verdict on a complete answer, or None when nothing is to be checked."""
    schema = schema_of(response_format)
    if schema is not None and not whole.tool_calls:
        return validate_text(whole.text, schema, whole.finish_reason)
    strict_calls = [(c, find_tool(tools or [], c["function"].get("name", ""))) for c in whole.tool_calls or ()]
    errors: list[str] = []
    for call, tool in strict_calls:
        if tool is None:
            errors.append(f"call of unknown function '{call['function'].get('name')}'")
        elif tool["function"].get("strict"):
            params = tool["function"].get("parameters") or {"type": "object"}
            verdict = validate_text(call["function"]["arguments"], params, whole.finish_reason)
            errors += [f"{tool['function']['name']} arguments {e}" for e in verdict.errors]
    if not strict_calls:
        return None
    if not errors:
        return Verdict("valid")
    return Verdict("truncated" if whole.finish_reason == "length" else "invalid", errors)


class StructuredOutput:
    name = "structured_output"

    def __init__(self, regenerate: Callable[[Any], Awaitable[None]]) -> None:
        self.regenerate = regenerate

    def wrap(self, ctx: Any, answer: Any) -> Any:
        gen = ctx.gen
        if gen is None or (gen.response_format is None and not any(
                (t.get("function") or {}).get("strict") for t in gen.tools or ())):
            return answer
        placeholder = GenerationChunk("", None, answer.first.prompt_tokens, 0, answer.first.model)
        rest = self._stream(ctx, answer) if ctx.stream else self._unary(ctx, answer)
        return dataclasses.replace(answer, first=placeholder, rest=rest)

    async def _stream(self, ctx: Any, answer: Any) -> AsyncIterator[GenerationChunk]:
        chunks = [answer.first]
        yield answer.first
        if answer.first.finish_reason is None:
            async for chunk in answer.rest:
                chunks.append(chunk)
                yield chunk
        verdict = check_answer(merge_chunks(chunks), ctx.gen.response_format, ctx.gen.tools)
        if verdict is not None:
            metrics.STRUCTURED.labels(verdict.verdict).inc()
            if verdict.verdict == "invalid":
                metrics.STRUCTURED.labels("failed").inc()
                raise validation_failed(verdict.errors)

    async def _unary(self, ctx: Any, answer: Any) -> AsyncIterator[GenerationChunk]:
        whole = await _drain(answer)
        verdict = check_answer(whole, ctx.gen.response_format, ctx.gen.tools)
        generated = answer.source == "generated"
        if verdict is not None and verdict.verdict == "invalid" and not generated:
            # a cached (or stale) text that does not match: generate afresh, no re-ask spent
            metrics.STRUCTURED.labels("invalid").inc()
            whole = await self._again(ctx, whole, add_usage=False)
            verdict, generated = check_answer(whole, ctx.gen.response_format, ctx.gen.tools), True
        if verdict is not None and verdict.verdict == "invalid" and generated and ctx.gen.is_chat:
            metrics.STRUCTURED.labels("invalid").inc()
            metrics.STRUCTURED.labels("reask").inc()
            shown = whole.text or json.dumps([c["function"] for c in whole.tool_calls or ()])
            ctx.gen = dataclasses.replace(ctx.gen, messages=reask_messages(ctx.gen.messages or [], shown,
                                                                           verdict.errors))
            whole = await self._again(ctx, whole, add_usage=True)
            verdict = check_answer(whole, ctx.gen.response_format, ctx.gen.tools)
            ctx.extras["structured_reasked"] = True
            if verdict is not None and verdict.verdict == "invalid":
                metrics.STRUCTURED.labels("failed").inc()
                raise validation_failed(verdict.errors)
        if verdict is not None:
            metrics.STRUCTURED.labels(verdict.verdict).inc()
            ctx.response_headers[HEADER] = verdict.verdict
        yield whole

    async def _again(self, ctx: Any, before: GenerationChunk, add_usage: bool) -> GenerationChunk:
        """Run ``ctx.gen`` once more through the generate stage; usage of both attempts when ``add_usage``."""
        wrapped, ctx.answer = ctx.answer, None
        await self.regenerate(ctx)
        second = await _drain(ctx.answer)
        ctx.answer = wrapped
        if not add_usage:
            return second
        return dataclasses.replace(second, prompt_tokens=before.prompt_tokens + second.prompt_tokens,
                                   completion_tokens=before.completion_tokens + second.completion_tokens)


async def _drain(answer: Any) -> GenerationChunk:
    chunks = [answer.first]
    if answer.first.finish_reason is None:
        chunks += [c async for c in answer.rest]
    return merge_chunks(chunks)
