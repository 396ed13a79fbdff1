"""Instant OpenAI-compatible echo upstream (benchmarks and load-test self-checks).

A bare ASGI app on uvicorn (httptools + uvloop): ``/v1/chat/completions`` and ``/v1/completions``
answer at once with the prompt's words (capped by ``max_tokens``), streaming as SSE ending in
``data: [DONE]`` with ``stream_options.include_usage``; ``/v1/models``; ``/health``.

    python -m loadtests.bench.echo_server --port 8201
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MODEL = "echo"


def _words(body: dict) -> list[str]:
    if "messages" in body:
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    else:
        content = body.get("prompt", "")
        content = " ".join(content) if isinstance(content, list) else str(content)
    words = content.split() or ["ok"]
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or len(words)
    return words[: max(1, int(limit))]


def _usage(body: dict, words: list[str]) -> dict:
    prompt = len(json.dumps(body.get("messages") or body.get("prompt") or "").split())
    return {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}


def completion(body: dict, chat: bool) -> dict:
    """The non-streaming response body."""
    words = _words(body)
    finish = "length" if body.get("max_tokens") == len(words) else "stop"
    text = " ".join(words)
    choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish} if chat
              else {"index": 0, "text": text, "finish_reason": finish, "logprobs": None})
    return {"id": f"echo-{uuid.uuid4().hex[:12]}", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": body.get("model", MODEL), "choices": [choice],
            "usage": _usage(body, words)}


def stream_events(body: dict, chat: bool) -> list[bytes]:
    """The SSE events of a streamed response, ``data: [DONE]`` last."""
    words = _words(body)
    rid, created, model = f"echo-{uuid.uuid4().hex[:12]}", int(time.time()), body.get("model", MODEL)
    obj = "chat.completion.chunk" if chat else "text_completion"
    events = []
    for i, word in enumerate(words):
        piece = (" " if i else "") + word
        last = i == len(words) - 1
        finish = ("length" if body.get("max_tokens") == len(words) else "stop") if last else None
        if chat:
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": piece, "finish_reason": finish, "logprobs": None}
        events.append({"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]})
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({"id": rid, "object": obj, "created": created, "model": model, "choices": [],
                       "usage": _usage(body, words)})
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


async def _send(send, status: int, payload: bytes, ctype: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def app(scope, receive, send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path, method = scope["path"], scope["method"]
    if method == "GET" and path in ("/health", "/healthz", "/readyz"):
        return await _send(send, 200, b'{"status":"ok"}')
    if method == "GET" and path == "/v1/models":
        return await _send(send, 200, json.dumps({"object": "list", "data": [
            {"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"}]}).encode())
    if method != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
        return await _send(send, 404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')
    raw, more = b"", True
    while more:
        msg = await receive()
        raw += msg.get("body", b"")
        more = msg.get("more_body", False)
    try:
        body = json.loads(raw)
    except ValueError:
        return await _send(send, 400, b'{"error":{"message":"invalid JSON","type":"invalid_request_error"}}')
    chat = path.endswith("chat/completions")
    if not body.get("stream"):
        return await _send(send, 200, json.dumps(completion(body, chat)).encode())
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    for event in stream_events(body, chat):
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def start(port: int, host: str = "127.0.0.1", timeout: float = 20) -> subprocess.Popen:
    """Run the echo server in a child process and wait until it answers."""
    proc = subprocess.Popen([sys.executable, "-m", "loadtests.bench.echo_server", "--host", host, "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"echo server exited with {proc.returncode} (port {port} in use?)")
        try:
            if httpx.get(f"http://{host}:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"echo server did not come up on {host}:{port}")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8201)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")


if __name__ == "__main__":
    main()
