"""Phase ``redis_outage``: the run's private redis-server is stopped for 30 s, then started again."""

from __future__ import annotations

import asyncio

from loadtests.faults.system import start_redis


async def run(run) -> None:
    holder = run.redis_holder

    async def stop_redis() -> None:
        holder["proc"].terminate()
        holder["proc"].wait(10)
        await asyncio.sleep(30)
        holder["proc"] = start_redis(run.args.redis_port)

    await run.phase("redis_outage", stop_redis)
