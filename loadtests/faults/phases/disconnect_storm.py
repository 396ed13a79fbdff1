"""Phase ``disconnect_storm``: 64 streams opened and dropped by the client after their first chunk; the
pools' in-flight gauge must fall back (no leaked generation)."""

from __future__ import annotations

import asyncio
import time

import httpx


async def storm(url: str, n: int = 64) -> dict:
    """``n`` streams dropped by the client right after their first chunk."""
    dropped = 0

    async def drop(client: httpx.AsyncClient, i: int) -> None:
        nonlocal dropped
        body = {"model": "small", "messages": [{"role": "user", "content": f"storm {i} {time.time()}"}],
                "max_tokens": 64, "stream": True, "cache": False}
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                async for _ in resp.aiter_raw():
                    dropped += 1
                    break  # leaving the block closes the connection mid-stream
        except httpx.HTTPError:
            pass

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        await asyncio.gather(*(drop(client, i) for i in range(n)))
    in_flight = None
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(30):
            text = (await client.get("/metrics")).text
            in_flight = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                            if line.startswith("llmgw_pool_ongoing_requests{"))
            if in_flight <= 8:  # the steady load's own requests
                break
            await asyncio.sleep(1)
    return {"streams_dropped": dropped, "pool_in_flight_after": in_flight}


async def run(run) -> None:
    result: dict = {}

    async def do_storm() -> None:
        result.update(await storm(run.url))

    await run.phase("disconnect_storm", do_storm, extra=result)
