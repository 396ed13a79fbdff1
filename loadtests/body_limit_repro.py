"""Why a 20 MB body gets a connection reset instead of the 413, and what fixes it (issue 14 #2).

    python -m loadtests.body_limit_repro [--mb 20] [--limit-kb 256] [--serve]
    flock /tmp/llmgw-graph.lock python -m loadtests.body_limit_repro --serve   # Ray Serve's proxy in front

Starts a plain uvicorn + FastAPI app (no Ray) on a free loopback port -- or, with ``--serve``, the same
FastAPI app as a Ray Serve ingress behind Serve's HTTP proxy (own local Ray instance) -- with three
handlers for the same 413, then sends each an oversized body the way clients do and prints what the
client saw:

* ``/immediate``  checks Content-Length and answers 413 without reading the body (the gateway today);
* ``/immediate_close`` the same with ``Connection: close`` (uvicorn then closes with the body unread);
* ``/drain``      reads and discards the body (app.api.body_limit.drain, bounded) and then answers 413;
* ``/bounded``    reads with app.api.body_limit.read_body_bounded (stops at the limit: chunked bodies
                  too), drains the rest, answers 413.

Clients: httpx with a Content-Length body (how the OpenAI SDK sends), httpx with a chunked body (no
Content-Length), a raw socket that writes the whole body before reading (like most clients), and curl
(which sends ``Expect: 100-continue`` for large bodies). Outcomes: ``413`` (the JSON error arrived) or
the exception the client got.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time

import httpx

APP = '''
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from app.api.body_limit import drain, read_body_bounded
from app.errors import PayloadTooLargeError

LIMIT = {limit}
app = FastAPI()

def reply(err):
    return JSONResponse(err.to_dict(), status_code=413, headers=err.headers)

@app.post("/immediate")
async def immediate(request: Request):
    size = int(request.headers.get("content-length") or 0)
    if size > LIMIT:
        return JSONResponse({{"error": {{"message": "too large", "code": "request_too_large"}}}}, status_code=413)
    return {{"ok": len(await request.body())}}

@app.post("/immediate_close")
async def immediate_close(request: Request):
    size = int(request.headers.get("content-length") or 0)
    if size > LIMIT:
        return JSONResponse({{"error": {{"message": "too large", "code": "request_too_large"}}}}, status_code=413,
                            headers={{"connection": "close"}})
    return {{"ok": len(await request.body())}}

@app.post("/drain")
async def drained(request: Request):
    size = int(request.headers.get("content-length") or 0)
    if size > LIMIT:
        await drain(request.stream())
        return reply(PayloadTooLargeError("too large"))
    return {{"ok": len(await request.body())}}

@app.post("/bounded")
async def bounded(request: Request):
    stream = request.stream()
    try:
        body = await read_body_bounded(stream, LIMIT)
    except PayloadTooLargeError as err:
        await drain(stream)
        return reply(err)
    return {{"ok": len(body)}}
'''


SERVE = """
import tempfile, time, ray
from ray import serve
ray.init(num_cpus=1, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="llmgw-repro-"))
serve.start(http_options={{"host": "127.0.0.1", "port": {port}}})

@serve.deployment(ray_actor_options={{"num_cpus": 0}})
@serve.ingress(app)
class Ingress:
    pass

serve.run(Ingress.bind(), route_prefix="/")
while True:
    time.sleep(3600)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outcome(fn) -> str:
    t0 = time.perf_counter()
    try:
        status = fn()
    except Exception as exc:  # what the client saw
        return f"{type(exc).__name__}: {str(exc)[:60]} ({time.perf_counter() - t0:.1f} s)"
    return f"{status} ({time.perf_counter() - t0:.1f} s)"


def raw_socket(port: int, path: str, body: bytes) -> str:
    """Write the whole body, then read the status line (what most clients do)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode())
        s.sendall(body)
        return s.recv(64).split(b"\r\n", 1)[0].decode()


def curl(port: int, path: str, body_file: str) -> str:
    proc = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", f"@{body_file}",
                           "-H", "content-type: application/json", f"http://127.0.0.1:{port}{path}"],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout if proc.returncode == 0 else f"curl exit {proc.returncode} ({proc.stdout})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--limit-kb", type=int, default=256)
    ap.add_argument("--serve", action="store_true", help="Behind Ray Serve's proxy (takes ~30 s to start).")
    args = ap.parse_args()
    port = free_port()
    code = APP.format(limit=args.limit_kb * 1024)
    start = SERVE.format(port=port) if args.serve else (
        f"\nimport uvicorn\nuvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning')")
    server = subprocess.Popen([sys.executable, "-c", code + start], cwd=".")
    body = b"x" * (args.mb << 20)
    body_file = "/tmp/llmgw-body-limit-repro.bin"
    with open(body_file, "wb") as f:
        f.write(body)
    try:
        for _ in range(1200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

        def chunks():
            for i in range(0, len(body), 1 << 16):
                yield body[i : i + (1 << 16)]

        results = {}
        for path in ("/immediate", "/immediate_close", "/drain", "/bounded"):
            url = f"http://127.0.0.1:{port}{path}"
            results[path] = {
                "httpx content-length": outcome(lambda url=url: httpx.post(url, content=body, timeout=30).status_code),
                "httpx chunked": outcome(lambda url=url: httpx.post(url, content=chunks(), timeout=30).status_code),
                "raw socket": outcome(lambda path=path: raw_socket(port, path, body)),
            }
            if shutil.which("curl"):
                results[path]["curl (Expect: 100-continue)"] = outcome(lambda path=path: curl(port, path, body_file))
        print(json.dumps(results, indent=2))
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
