"""End of a batch: output/error files, final status, settlement, cleanup — and the sweeper that drives
cancels, expiry and crashed finalizations. Every step is idempotent: any worker may redo it after a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any

from app.batch.billing import Ledger, NullLedger
from app.batch.keys import GROUP
from app.batch.records import batch_object, error_line
from app.batch.status import TERMINAL, TIMESTAMP
from app.batch.store import BatchStore
from app.observability import metrics

logger = logging.getLogger(__name__)

# One settler per batch. KEYS: batch; ARGV: now, stale_after_s -> 1 this caller settles, 0 settled/claimed
CLAIM_SETTLE = """
if redis.call('HEXISTS', KEYS[1], 'settled') == 1 then return 0 end
local c = redis.call('HGET', KEYS[1], 'settle_claim')
if c and tonumber(c) > tonumber(ARGV[1]) - tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'settle_claim', ARGV[1])
return 1
"""

SKIP = {"cancel": ("cancelled", "batch_cancelled", "The batch was cancelled before this request started."),
        "expire": ("expired", "batch_expired", "This request could not be executed before the batch's "
                                               "completion window expired.")}


def view_file_id(bid: str, flag: str) -> str:
    """Deterministic output/error file id of a batch: two finalizers create the same file."""
    return "file-" + hashlib.sha256(f"{bid}:{flag}".encode()).hexdigest()[:24]


class Finisher:
    def __init__(self, store: BatchStore, ledger: Ledger | None = None, sender: Any = None) -> None:
        self.store = store
        self.cfg = store.cfg
        self.keys = store.keys
        self.ledger = ledger or NullLedger()
        self.sender = sender
        self.claim_settle = store.redis.register_script(CLAIM_SETTLE)

    async def finalize(self, bid: str) -> None:
        """All lines have a result: in_progress → finalizing → completed."""
        h = await self.store.batch_any(bid)
        if not h or h.get("stop"):
            return
        total = int(h.get("total") or 0)
        if h["status"] == "in_progress":
            if await self.store.redis.hlen(self.keys.results(bid)) < total:
                return
            await self.store.transition(bid, "finalizing", "finalizing_at", ["in_progress"])
        elif h["status"] != "finalizing":
            return
        await self._close(bid, "completed", ["finalizing"])

    async def sweep(self) -> None:
        """One pass over the active batches: start expiry, complete cancels and expiries, resume finalizing."""
        redis = self.store.redis
        now = time.time()
        for raw in await redis.smembers(self.keys.active):
            bid = raw.decode()
            try:
                await self._sweep_one(bid, now)
            except Exception:
                logger.exception("batch sweep of %s failed", bid)

    async def _sweep_one(self, bid: str, now: float) -> None:
        redis = self.store.redis
        h = await self.store.batch_any(bid)
        if not h:
            await redis.srem(self.keys.active, bid)
            return
        if h["status"] in TERMINAL:  # ended, but its settlement/cleanup did not finish (a worker died)
            await self._close(bid, h["status"], [h["status"]])
            return
        status, stop = h["status"], h.get("stop")
        if not stop and status in ("in_progress", "finalizing") and now >= float(h.get("expires_at") or "inf"):
            stop = "expire"
            await redis.hsetnx(self.keys.batch(bid), "stop", stop)
        if not stop and status == "cancelling":
            stop = "cancel"
            await redis.hsetnx(self.keys.batch(bid), "stop", stop)
        if stop:
            if status == "validating":
                return  # the start entry sees the stop and gives up; then status moves on
            running = await redis.hgetall(self.keys.running(bid))
            live_after = now - self.cfg.claim_idle_ms / 1000
            if any(float(ts) > live_after for ts in running.values()):
                return  # lines in flight finish (or are cancelled) first
            final, code, message = SKIP[stop]
            await self._skip_unstarted(bid, code, message)
            await self._close(bid, final, [status])
        elif status == "in_progress":
            if await redis.hlen(self.keys.results(bid)) >= int(h.get("total") or 0):
                await self.finalize(bid)
        elif status == "finalizing":
            await self.finalize(bid)

    async def _skip_unstarted(self, bid: str, code: str, message: str) -> None:
        """Every line without a result gets an error line (not billed: it never ran)."""
        q, k = self.store.queue, self.keys
        redis = self.store.redis
        done = {int(x) for x in await redis.hkeys(k.results(bid))}
        skipped = 0
        async for line, raw in _hscan(redis, k.lines(bid)):
            if int(line) in done:
                continue
            custom_id = json.loads(raw).get("custom_id", "")
            value = "e" + json.dumps(error_line(custom_id, code, message))
            n = await q.write_result(keys=[k.results(bid), k.batch(bid), k.running(bid), k.stream("batch")],
                                     args=[line, value, 0, 0, GROUP, ""])
            skipped += n != -1
        if skipped:
            metrics.BATCH_ITEMS.labels("batch", code.removeprefix("batch_")).inc(skipped)

    async def _close(self, bid: str, final: str, sources: list[str]) -> None:
        """Files, final status, settlement, cleanup, webhook (in this order: a client that sees the final
        status finds its files)."""
        s, k, redis = self.store, self.keys, self.store.redis
        h = await s.batch_any(bid)
        for flag, field, count in (("o", "output_file_id", int(h.get("completed") or 0)),
                                   ("e", "error_file_id", int(h.get("failed") or 0))):
            if count and not h.get(field):
                fid = view_file_id(bid, flag)
                await s.add_view_file(h["tenant"], bid, flag, count, fid=fid, size=int(h.get(f"bytes_{flag}") or 0))
                await redis.hset(k.batch(bid), field, fid)
        moved = h["status"] != final and await s.transition(bid, final, TIMESTAMP[final], sources)
        h = await s.batch_any(bid)
        if h["status"] not in TERMINAL:
            return  # someone else moved it meanwhile (e.g. a cancel during finalizing): the next sweep decides
        # A claim makes concurrent finalizers settle once; a claim older than claim_idle_ms (its worker died
        # before recording "settled") is taken over — the ledger's settle is idempotent per reservation.
        if not h.get("settled"):
            if not await self.claim_settle(keys=[k.batch(bid)], args=[time.time(), self.cfg.claim_idle_ms / 1000]):
                return  # another finalizer is settling; the batch stays active until it has
            await self.ledger.settle(h.get("reservation", ""), float(h.get("cost_usd") or 0.0))
            await redis.hset(k.batch(bid), "settled", "1")
        async with redis.pipeline(transaction=False) as pipe:
            pipe.delete(k.lines(bid), k.running(bid), k.attempts(bid))
            pipe.expire(k.results(bid), self.cfg.retention_s)
            pipe.srem(k.active, bid)
            await pipe.execute()
        if moved and h.get("webhook_url"):
            await self._webhook(h)

    async def _webhook(self, h: dict[str, str]) -> None:
        if self.sender is None:
            logger.warning("batch %s: webhook_url set but no webhook sender is configured", h["id"])
            return
        try:
            await self.sender.send(h["webhook_url"], f"batch.{h['status']}", batch_object(h),
                                   event_id=f"{h['id']}:{h['status']}",
                                   secret=os.environ.get(self.cfg.webhook_secret_env))
        except Exception as exc:
            logger.warning("batch %s: webhook failed (%s)", h["id"], type(exc).__name__)


async def _hscan(redis: Any, key: str):
    cursor = 0
    while True:
        cursor, items = await redis.hscan(key, cursor, count=1000)
        for field, value in items.items():
            yield field.decode(), value
        if not cursor:
            return
