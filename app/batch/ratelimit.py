"""The batch lane's own rate per tenant (requests and worst-case tokens per minute), in Redis.

Fixed one-minute windows shared by every worker replica; a line over the rate waits for the next
window rather than failing. Independent of the key's real-time rpm/tpm.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.batch.keys import Keys


class BatchRate:
    def __init__(self, redis: Any, keys: Keys, rpm: int | None, tpm: int | None) -> None:
        self.redis, self.keys, self.rpm, self.tpm = redis, keys, rpm, tpm

    async def acquire(self, tenant: str, tokens: int) -> float:
        """Wait until the line fits this minute's window; returns the seconds waited."""
        if not self.rpm and not self.tpm:
            return 0.0
        waited = 0.0
        while True:
            now = time.time()
            window = int(now // 60)
            key = self.keys.rate(tenant, window)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, "r", 1)
                pipe.hincrby(key, "t", tokens)
                pipe.expire(key, 120)
                requests, used, _ = await pipe.execute()
            if (not self.rpm or requests <= self.rpm) and (not self.tpm or used <= self.tpm or requests == 1):
                return waited
            async with self.redis.pipeline(transaction=True) as pipe:  # give the slot back, wait for the next window
                pipe.hincrby(key, "r", -1)
                pipe.hincrby(key, "t", -tokens)
                await pipe.execute()
            pause = (window + 1) * 60 - now + 0.01
            await asyncio.sleep(pause)
            waited += pause
