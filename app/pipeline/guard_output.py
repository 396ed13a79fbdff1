"""Output stage ``guard_output``: PII and secrets in the answer redacted (or the answer blocked) by the
asking tenant's rules — fresh answers and cache hits alike. Streams are redacted as they flow: only as much
text is held back as a match can span, so nothing leaves split across two chunks unredacted. A block ends
the answer with ``finish_reason: content_filter`` (OpenAI's own) and what was already safe to send."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from app.generation import GenerationChunk, merge_chunks
from app.guardrails.service import Guardrails
from app.pipeline.context import Answer, RequestContext
from app.pipeline.guard_input import note
from app.pipeline.route import tenant_option
from app.structured.validate import HEADER as SCHEMA_HEADER


class GuardOutput:
    name = "guard_output"

    def __init__(self, guardrails: Guardrails) -> None:
        self.guardrails = guardrails

    def wrap(self, ctx: RequestContext, answer: Answer) -> Answer:
        guard = self.guardrails.output_guard(ctx.tenant, tenant_option(ctx, "guardrails", None))
        if not guard.active:
            return answer
        first = answer.first
        placeholder = GenerationChunk("", None, first.prompt_tokens, 0, first.model)
        rest = self._redacted(ctx, answer, guard.stream()) if ctx.stream else self._whole(ctx, answer, guard)
        return dataclasses.replace(answer, first=placeholder, rest=rest)

    async def _whole(self, ctx: RequestContext, answer: Answer, guard) -> AsyncIterator[GenerationChunk]:
        """A unary answer checked as one text: a block leaves no content at all (``content_filter``)."""
        chunks = [answer.first]
        if answer.first.finish_reason is None:
            chunks += [c async for c in answer.rest]
        whole = merge_chunks(chunks)
        result = guard.check(whole.text)
        note(ctx, result.decisions)
        if result.blocked:
            yield dataclasses.replace(whole, text="", finish_reason="content_filter", tool_calls=None)
            return
        if result.text != whole.text and ctx.gen is not None and ctx.gen.sampling.structured is not None:
            # the schema verdict was given before redaction: the client must not read "valid" for changed JSON
            ctx.response_headers[SCHEMA_HEADER] = "redacted"
        yield dataclasses.replace(whole, text=result.text)

    async def _redacted(self, ctx: RequestContext, answer: Answer, redactor) -> AsyncIterator[GenerationChunk]:
        chunk: GenerationChunk | None = answer.first
        try:
            while chunk is not None:
                out = redactor.feed(chunk.text)
                if redactor.blocked:
                    yield dataclasses.replace(chunk, text=out, finish_reason="content_filter", tool_calls=None)
                    if answer.cancel is not None:
                        answer.cancel()
                    return
                if chunk.finish_reason is not None:
                    out += redactor.flush()
                    yield dataclasses.replace(chunk, text=out)
                    return
                yield dataclasses.replace(chunk, text=out)  # empty text too: token counts keep flowing
                chunk = await anext(answer.rest, None)
            tail = redactor.flush()  # a stream that ended without a finish reason
            if tail:
                yield GenerationChunk(tail, None, answer.first.prompt_tokens, 0, answer.first.model)
        finally:
            note(ctx, redactor.decisions)
