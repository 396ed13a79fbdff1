"""Read-your-writes for fire-and-forget cache stores.

The ingress answers first and stores the answer in the cache afterwards. So that a request that
follows still sees that store (the next identical prompt hits, a paraphrase hits semantically,
admin stats count it), a lookup first waits for the stores this process still has in flight
under the same key (the cache's context key: semantic matches never cross it); admin reads wait
for all of them. Plain asyncio, one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class PendingWrites:
    def __init__(self) -> None:
        self._by_key: dict[str, set[asyncio.Future]] = {}
        self._tasks: set[asyncio.Task] = set()  # strong references until each write finishes

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_key.values())

    def begin(self, key: str) -> asyncio.Future:
        """Register a write under ``key``; resolve the returned future when it has landed (or failed)."""
        fut = asyncio.get_running_loop().create_future()
        self._by_key.setdefault(key, set()).add(fut)
        fut.add_done_callback(lambda f: self._forget(key, f))
        return fut

    def _forget(self, key: str, fut: asyncio.Future) -> None:
        futures = self._by_key.get(key)
        if futures is not None:
            futures.discard(fut)
            if not futures:
                del self._by_key[key]

    async def wait(self, key: str | None = None, timeout: float = 1.0) -> None:
        """Wait (at most ``timeout`` s) for the in-flight writes under ``key`` (all keys when None)."""
        futures = set(self._by_key.get(key, ())) if key is not None else {f for s in self._by_key.values() for f in s}
        if futures:
            await asyncio.wait(futures, timeout=timeout)

    def schedule(self, key: str, write: Callable[[], Awaitable[None]], grace_s: float = 1.0) -> Callable[[], None]:
        """Register ``write`` under ``key`` now; return ``start()``, which runs it (once) in a task.

        Call ``start`` once the answer has been sent. If nobody calls it within ``grace_s`` (the
        response was never fully sent), it starts anyway: a write is never lost.
        """
        fut = self.begin(key)
        loop = asyncio.get_running_loop()
        started = False

        async def job() -> None:
            try:
                await write()
            finally:
                if not fut.done():
                    fut.set_result(None)

        def start() -> None:
            nonlocal started
            if started:
                return
            started = True
            task = loop.create_task(job())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        loop.call_later(grace_s, start)
        return start


async def call_on_loop(fn: Callable[[], None]) -> None:
    """For Starlette's ``BackgroundTask`` (which runs a sync function in a thread): call ``fn`` on the loop."""
    fn()
