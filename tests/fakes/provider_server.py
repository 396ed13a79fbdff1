"""A real local HTTP server speaking the OpenAI chat-completions and Anthropic messages wire formats,
with switchable fault modes. Raw asyncio HTTP/1.1 so faults (resets, broken streams) are real.

Tools and structured output in both formats: a forced tool choice (OpenAI ``required`` / named,
Anthropic ``any`` / ``tool``) answers with a streamed call whose arguments satisfy the function's
schema; an OpenAI ``response_format`` answers with JSON satisfying it (``bad_json`` mode: violating
it); ``logprobs`` adds OpenAI logprob entries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

MODES = ("ok", "500", "503", "429", "slow", "reset", "broken_stream", "400", "bad_json")


def instance(schema: dict[str, Any]) -> Any:
    """A small value satisfying the simple schemas tests use (enum, const, type, required properties)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "anyOf" in schema:
        return instance(schema["anyOf"][0])
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties", {})
        return {k: instance(props.get(k, {})) for k in schema.get("required", list(props))}
    if kind == "array":
        return [instance(schema.get("items", {}))] * schema.get("minItems", 0)
    return {"string": "x", "integer": max(1, schema.get("minimum", 1)), "number": 1.5, "boolean": True,
            "null": None}.get(kind, "x")


def _forced_openai(body: dict) -> list[dict] | None:
    """(name, parameters) for the calls an OpenAI request forces, else None."""
    tools = {t["function"]["name"]: t["function"].get("parameters") or {} for t in body.get("tools") or []}
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return [{"name": name, "parameters": tools.get(name, {})}]
    if choice == "required" and tools:
        name = next(iter(tools))
        return [{"name": name, "parameters": tools[name]}]
    return None


@dataclass
class FakeProvider:
    mode: str = "ok"
    retry_after: float = 1.0
    slow_s: float = 5.0
    words: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake", " provider", "."])
    requests: list[dict[str, Any]] = field(default_factory=list)
    modes_queue: list[str] = field(default_factory=list)  # consumed one per request before `mode`
    # LLM-as-judge requests (their system message carries app.evaluation.judge.MARKER) get a judge JSON:
    # every criterion named on the rubric's "CRITERIA:" line scored `judge_score`, or `judge_reply` verbatim.
    judge_score: int = 4
    judge_reply: str | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProvider:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the server and end the open handlers on the loop itself (a handler left suspended is finalised
        later by the GC, closing its writer on a dead loop: "Event loop is closed" warnings), then stop."""
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):  # best effort: the loop stops either way
            done.result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        self._server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            _method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            body = json.loads(await reader.readexactly(int(headers.get("content-length", 0))) or b"{}")
            mode = self.modes_queue.pop(0) if self.modes_queue else self.mode
            self.requests.append({"path": path, "headers": headers, "body": body, "mode": mode, "t": time.monotonic()})
            await self._respond(mode, path, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    async def _respond(self, mode: str, path: str, body: dict, writer: asyncio.StreamWriter) -> None:
        if mode == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
            writer.transport.abort()
            return
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        if mode in ("500", "503", "429", "400"):
            extra = f"Retry-After: {self.retry_after}\r\n" if mode == "429" else ""
            payload = json.dumps({"error": {"message": f"fake {mode}", "type": "fake"}}).encode()
            writer.write(f"HTTP/1.1 {mode} X\r\nContent-Type: application/json\r\n{extra}Content-Length: "
                         f"{len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        events = self._anthropic_events(body) if path.endswith("/messages") else self._openai_events(body, mode)
        for i, event in enumerate(events):
            if mode == "broken_stream" and i == 3:
                writer.transport.abort()
                return
            writer.write(event.encode())
            await writer.drain()
            await asyncio.sleep(0.005)

    def _judge_words(self, body: dict) -> list[str] | None:
        text = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
        if "LLMGW-JUDGE-RUBRIC-V1" not in text:
            return None
        if self.judge_reply is not None:
            return [self.judge_reply]
        line = next((ln for ln in text.splitlines() if ln.startswith("CRITERIA:")), "CRITERIA:")
        criteria = [c.strip() for c in line.removeprefix("CRITERIA:").split(",") if c.strip()]
        return [json.dumps({"scores": {c: self.judge_score for c in criteria}, "reasoning": "fake judge"})]

    def _words(self, body: dict, mode: str) -> list[str]:
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object":
            return ['{"fake":', ' true}']
        if fmt.get("type") == "json_schema":
            text = json.dumps(instance(fmt["json_schema"].get("schema") or {}))
            if mode == "bad_json":
                text = json.dumps({"unexpected": [1, 2]})
            return [text[i:i + 8] for i in range(0, len(text), 8)] or ["{}"]
        return self.words

    def _openai_events(self, body: dict, mode: str = "ok") -> list[str]:
        model = body.get("model", "fake")
        out = []
        forced = _forced_openai(body)

        def chunk_event(delta: dict, finish: str | None, logprobs: dict | None = None) -> str:
            chunk = {"id": "f", "object": "chat.completion.chunk", "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]}
            return f"data: {json.dumps(chunk)}\n\n"

        if forced:
            for i, call in enumerate(forced):
                args = json.dumps(instance(call["parameters"]))
                out.append(chunk_event({"tool_calls": [{"index": i, "id": f"call_fake{i}", "type": "function",
                                                        "function": {"name": call["name"], "arguments": ""}}]}, None))
                out += [chunk_event({"tool_calls": [{"index": i, "function": {"arguments": args[j:j + 5]}}]}, None)
                        for j in range(0, len(args), 5)]
            out.append(chunk_event({}, "stop" if isinstance(body.get("tool_choice"), dict) else "tool_calls"))
        words = [] if forced else (self._judge_words(body) or self._words(body, mode))
        for i, w in enumerate(words):
            logprobs = None
            if body.get("logprobs"):
                top = [{"token": w, "logprob": -0.5, "bytes": list(w.encode())}][:body.get("top_logprobs") or 0]
                logprobs = {"content": [{"token": w, "logprob": -0.5, "bytes": list(w.encode()), "top_logprobs": top}]}
            out.append(chunk_event({"content": w}, "stop" if i == len(words) - 1 else None, logprobs))
        n = max(len(words), 1)
        usage = {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": 11 + n}
        out.append(f"data: {json.dumps({'id': 'f', 'choices': [], 'usage': usage})}\n\n")
        out.append("data: [DONE]\n\n")
        return out

    def _anthropic_events(self, body: dict) -> list[str]:
        def ev(name: str, data: dict) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        start = {"message": {"id": "m", "model": body.get("model"), "usage": {"input_tokens": 9}}}
        choice = body.get("tool_choice") or {}
        if choice.get("type") in ("tool", "any") and body.get("tools"):
            tool = next((t for t in body["tools"] if t["name"] == choice.get("name")), body["tools"][0])
            args = json.dumps(instance(tool.get("input_schema") or {}))
            out = [ev("message_start", start), ev("content_block_start", {"index": 0, "content_block": {
                "type": "tool_use", "id": "toolu_fake0", "name": tool["name"], "input": {}}})]
            out += [ev("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                                     "partial_json": args[j:j + 5]}})
                    for j in range(0, len(args), 5)]
            return [*out, ev("content_block_stop", {"index": 0}),
                    ev("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}),
                    ev("message_stop", {})]
        out = [ev("message_start", start),
               ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]
        out += [ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
                for w in self.words]
        out += [ev("content_block_stop", {"index": 0}),
                ev("message_delta", {"delta": {"stop_reason": "end_turn"},
                                     "usage": {"output_tokens": len(self.words)}}),
                ev("message_stop", {})]
        return out
