"""Phase ``oversized_body`` (issue 14 #2 on the live gateway): 20 MB bodies by Content-Length, chunked and
from a raw socket that writes everything before reading: the 413, or a reset?"""

from __future__ import annotations

import asyncio
import json

import httpx


async def run(run) -> None:
    from loadtests.body_limit_repro import outcome, raw_socket

    big = json.dumps({"model": "small", "messages": [{"role": "user", "content": "x" * (20 << 20)}]}).encode()

    def chunked():
        for i in range(0, len(big), 1 << 16):
            yield big[i : i + (1 << 16)]

    chat = f"{run.url}/v1/chat/completions"
    probes = {
        "httpx content-length": lambda: httpx.post(chat, content=big, timeout=60).status_code,
        "httpx chunked": lambda: httpx.post(chat, content=chunked(), timeout=60).status_code,
        "raw socket": lambda: raw_socket(run.args.port, "/v1/chat/completions", big),
    }
    run.report["oversized_body_20MB"] = {k: await asyncio.to_thread(outcome, f) for k, f in probes.items()}
    print(f"[faults] oversized_body: {json.dumps(run.report['oversized_body_20MB'])}", flush=True)
