"""Phase ``pool_replica``: the small pool's replica is killed; Serve restarts it."""

from __future__ import annotations

import asyncio

from loadtests.faults.system import kill, wait_running


async def run(run) -> None:
    async def restore() -> dict:
        return {"replica_back_s": round(await wait_running("pool-small"), 1)}

    await run.phase("pool_replica", lambda: asyncio.to_thread(kill, "pool-small"), restore)
