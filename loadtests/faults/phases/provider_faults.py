"""Phase ``provider_faults``: both pools kept down while the provider answers 500, 429, hangs past its
timeout, then breaks its streams (one sub-phase each)."""

from __future__ import annotations

import asyncio

from loadtests.faults.system import kill, wait_running


async def run(run) -> None:
    keeper: dict = {}

    async def keep_pools_down() -> None:  # a restarted replica must not answer during the sub-phase
        while True:
            await asyncio.to_thread(kill, "pool-small")
            await asyncio.to_thread(kill, "pool-large")
            await asyncio.sleep(3)

    for mode in ("500", "429", "slow", "broken_stream"):
        async def pools_down_and(mode: str = mode) -> None:
            run.provider.mode = mode
            keeper["task"] = asyncio.create_task(keep_pools_down())

        async def restore_provider() -> dict:
            keeper["task"].cancel()
            run.provider.mode = "ok"
            back = max(await wait_running("pool-small"), await wait_running("pool-large"))
            return {"pools_back_s": round(back, 1)}

        await run.phase(f"provider_{mode}", pools_down_and, restore_provider)
