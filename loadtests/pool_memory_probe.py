"""Does the pool replica's own code keep memory per request? (the soak's pool replicas grew linearly, issue 14)

    python -m loadtests.pool_memory_probe [N]

``ModelPool`` (deployments/pool.py) in-process on the echo engine, no Ray: warm-up, then N requests (half
relayed streams read through ``RelayStream``, half unary ``generate``), each with its span and metrics;
prints the RSS before/after and the largest tracemalloc growths. No graph is started (no lock needed).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
import uuid

import psutil

from app.generation import GenerationRequest, SamplingOptions
from app.stream_relay import RelayConnections, RelayStream
from deployments.pool import ModelPool


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


async def main(n: int) -> None:
    pool = ModelPool.func_or_class({"name": "small", "engine_kind": "echo", "engine": {"model": "echo-small"}})
    connections = RelayConnections()

    async def one(i: int) -> None:
        req = GenerationRequest(request_id=uuid.uuid4().hex, model="echo-small",
                                messages=[{"role": "user", "content": f"Tell me something new, request {i}"}],
                                sampling=SamplingOptions(max_tokens=16))
        if i % 2:
            await pool.generate(req, {})
        else:
            async for _ in RelayStream(pool.relay(req, {}), connections):
                pass

    for i in range(300):
        await one(i)
    gc.collect()
    tracemalloc.start(25)
    before, rss_before = tracemalloc.take_snapshot(), rss_mb()
    for i in range(n):
        await one(i)
    gc.collect()
    after = tracemalloc.take_snapshot()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(f"{n} requests: RSS {rss_before:.1f} -> {rss_mb():.1f} MB, traced Python memory {growth / 1024:+.1f} KiB, "
          f"relay channels open {len(pool.relay_server.channels)}")
    for stat in after.compare_to(before, "traceback")[:5]:
        print(f"  {stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} blocks  {stat.traceback.format()[-1].strip()}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
