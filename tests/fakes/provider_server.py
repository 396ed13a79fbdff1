"""A real local HTTP server speaking the OpenAI chat-completions and Anthropic messages wire formats,
with switchable fault modes. Raw asyncio HTTP/1.1 so faults (resets, broken streams) are real."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

MODES = ("ok", "500", "503", "429", "slow", "reset", "broken_stream", "400")


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
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)

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
        events = self._anthropic_events(body) if path.endswith("/messages") else self._openai_events(body)
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

    def _openai_events(self, body: dict) -> list[str]:
        model = body.get("model", "fake")
        out = []
        words = self._judge_words(body) or self.words
        for i, w in enumerate(words):
            last = i == len(words) - 1
            chunk = {"id": "f", "object": "chat.completion.chunk", "model": model,
                     "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": "stop" if last else None}]}
            out.append(f"data: {json.dumps(chunk)}\n\n")
        usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)}
        out.append(f"data: {json.dumps({'id': 'f', 'choices': [], 'usage': usage})}\n\n")
        out.append("data: [DONE]\n\n")
        return out

    def _anthropic_events(self, body: dict) -> list[str]:
        def ev(name: str, data: dict) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        start = {"message": {"id": "m", "model": body.get("model"), "usage": {"input_tokens": 9}}}
        out = [ev("message_start", start),
               ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})]
        out += [ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
                for w in self.words]
        out += [ev("content_block_stop", {"index": 0}),
                ev("message_delta", {"delta": {"stop_reason": "end_turn"},
                                     "usage": {"output_tokens": len(self.words)}}),
                ev("message_stop", {})]
        return out
