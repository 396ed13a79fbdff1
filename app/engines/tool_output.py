"""Engine text -> OpenAI content and ``tool_calls`` deltas, for one request with tools.

``named``: guided decoding produced the forced function's arguments: streamed as argument deltas.
``required``: guided decoding produced ``[{"name", "parameters"}, ...]``: parsed when complete.
``auto``: the pool's vLLM tool parser (``PoolConfig.tool_parser``, e.g. ``hermes``) reads the
model's own tool-call syntax as it streams; text outside calls stays content.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from app.structured.tool_schema import call_id, calls_from_guided, forced_name

logger = logging.getLogger(__name__)
Deltas = list[dict[str, Any]] | None


class ToolOutput:
    def __init__(self, mode: str, tool_choice: Any, parser: Any = None, parser_request: Any = None) -> None:
        self.mode = mode
        self.tool_choice = tool_choice
        self.parser = parser
        self.parser_request = parser_request
        self.text = ""
        self.ids: list[int] = []
        self.content_sent = 0  # auto: characters of plain content sent so far
        self.called = False
        self._named_id = call_id()
        self._parser_failed = False

    def feed(self, delta: str, delta_ids: Sequence[int]) -> tuple[str, Deltas]:
        """(content delta, tool-call deltas) for the next piece of engine output."""
        previous, previous_ids = self.text, self.ids
        self.text += delta
        self.ids = [*previous_ids, *delta_ids]
        if self.mode == "named":
            if not delta and self.called:
                return "", None
            fn: dict[str, Any] = {"arguments": delta}
            call: dict[str, Any] = {"index": 0, "function": fn}
            if not self.called:
                call.update(id=self._named_id, type="function")
                fn["name"] = forced_name(self.tool_choice)
                self.called = True
            return "", [call]
        if self.mode == "required":
            return "", None
        return self._auto(previous, previous_ids, delta, delta_ids)

    def _auto(self, previous: str, previous_ids: list[int], delta: str, delta_ids: Sequence[int]) -> tuple[str, Deltas]:
        if self._parser_failed or self.parser is None or not delta:
            return self._plain(delta)
        try:
            msg = self.parser.extract_tool_calls_streaming(previous, self.text, delta, previous_ids, self.ids,
                                                           list(delta_ids), self.parser_request)
        except Exception as exc:  # a parser bug must not break the answer: the rest is plain text
            logger.warning("tool parser failed (%s); answering as text", type(exc).__name__)
            self._parser_failed = True
            return self._plain(self.text[self.content_sent:]) if not self.called else ("", None)
        if msg is None:
            return "", None
        content = msg.content or ""
        self.content_sent += len(content)
        calls = [c.model_dump(exclude_none=True) for c in msg.tool_calls] or None
        if calls:
            self.called = True
        return content, calls

    def _plain(self, delta: str) -> tuple[str, Deltas]:
        self.content_sent += len(delta)
        return delta, None

    def finish(self) -> tuple[str, Deltas]:
        """What is still held back when the engine finished (content, tool-call deltas)."""
        if self.mode == "required":
            calls = calls_from_guided(self.text, self.tool_choice)
            if calls:
                self.called = True
                return "", calls
            return self.text, None  # not the expected JSON (truncated): hand the text back as content
        if self.mode == "auto" and not self.called and self.content_sent < len(self.text):
            rest = self.text[self.content_sent:]
            self.content_sent = len(self.text)
            return rest, None
        return "", None

    def finish_reason(self, engine_reason: str | None) -> str | None:
        if engine_reason == "length" or not self.called:
            return engine_reason
        return "stop" if self.mode == "named" else "tool_calls"


def make_parser(name: str, tokenizer: Any, model: str, tools: list[dict[str, Any]]) -> tuple[Any, Any]:
    """The vLLM tool parser ``name`` for this request and the vLLM request object it reads."""
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.tool_parsers.abstract_tool_parser import ToolParserManager

    request = ChatCompletionRequest(model=model, messages=[{"role": "user", "content": ""}], tools=tools,
                                    tool_choice="auto")
    parser = ToolParserManager.get_tool_parser(name)(tokenizer, request.tools)
    return parser, request
