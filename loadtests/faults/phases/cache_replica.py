"""Phase ``cache_replica``: the cache replica is killed; requests must keep being answered (misses)."""

from __future__ import annotations

import asyncio

from loadtests.faults.system import kill, wait_running


async def run(run) -> None:
    async def restore() -> dict:
        return {"replica_back_s": round(await wait_running("CacheDeployment"), 1)}

    await run.phase("cache_replica", lambda: asyncio.to_thread(kill, "CacheDeployment"), restore)
