"""A batch worker: pulls entries from the lanes, runs them through ``execute``, writes results once.

Entries: ``start`` (expand a validated batch into one stream entry per line), ``line`` (one batch
line), ``job`` (one async single request). Delivery is at-least-once; the result write is idempotent
(HSETNX per line, in one script with the XACK and the line's cost), so a line re-run after a crash
appears once in the output and is billed once. ``execute(body, endpoint, tenant, key_id)`` returns
``(status_code, body[, cost_usd])``: the deployment gives the gateway's own request path (without a
cost the line is priced from its ``usage``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.batch.billing import Ledger, NullLedger, line_cost, worst_case_tokens
from app.batch.finalize import Finisher
from app.batch.keys import GROUP, LANES
from app.batch.queue import Entry
from app.batch.ratelimit import BatchRate
from app.batch.records import decode, error_line, job_object, output_line
from app.batch.store import BatchStore
from app.batch.validation import parse_line, split_lines
from app.errors import find_gateway_error, upstream_error
from app.observability import metrics

logger = logging.getLogger(__name__)

# (body, endpoint, tenant, key_id) -> (status_code, body) or (status_code, body, cost_usd)
Execute = Callable[[Any, str, str, "str | None"], Awaitable[tuple]]
RETRYABLE = frozenset({502, 503, 504})
PREEMPTED = -1  # _run's status of a line the capacity gate preempted for real-time work (re-run, not an attempt)

# Finish an async job once. KEYS: job; ARGV: status, status_code, body, completed_at, cost -> 1 written, 0 done
WRITE_JOB = """
local s = redis.call('HGET', KEYS[1], 'status')
if s == 'completed' or s == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_code', ARGV[2], 'body_out', ARGV[3], 'completed_at', ARGV[4],
           'cost_usd', ARGV[5])
return 1
"""


class BatchWorker:
    def __init__(self, store: BatchStore, execute: Execute, *, consumer: str, gate: Any = None,
                 pool_for: Callable[[Any], str | None] | None = None, ledger: Ledger | None = None,
                 sender: Any = None) -> None:
        self.store, self.execute, self.consumer = store, execute, consumer
        self.cfg, self.keys, self.queue, self.redis = store.cfg, store.keys, store.queue, store.redis
        self.gate, self.pool_for = gate, pool_for
        self.ledger = ledger or NullLedger()
        self.sender = sender
        self.finisher = Finisher(store, self.ledger, sender)
        self.rate = BatchRate(store.redis, store.keys, self.cfg.rpm, self.cfg.tpm)
        self.write_job = store.redis.register_script(WRITE_JOB)
        self.held: dict[str, Entry] = {}  # entries this worker holds (heartbeat keeps them ours)
        self.executing: dict[tuple[str, str], asyncio.Task] = {}  # (batch, line) -> its execution
        self._meta: dict[str, dict[str, str]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._room = asyncio.Event()
        self.stopping = False

    # ---- loops ----------------------------------------------------------------------------------
    async def run(self) -> None:
        await self.queue.ensure_groups()
        await asyncio.gather(self._read_loop(), self._sweep_loop(), self._heartbeat_loop())

    async def stop(self) -> None:
        """Stop taking work and drop what is in flight (its entries stay pending: another worker reclaims them)."""
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def free(self) -> int:
        return self.cfg.max_in_flight - len(self.held)

    def spawn(self, entry: Entry) -> asyncio.Task:
        self.held[entry.id] = entry
        task = asyncio.create_task(self.handle(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_loop(self) -> None:
        while not self.stopping:
            if self.free() <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                entries = await self.queue.read(self.consumer, self.free(), block_ms=1000)
            except Exception as exc:
                logger.warning("batch queue read failed (%s); retrying", type(exc).__name__)
                if "NOGROUP" in str(exc):  # the streams were deleted (e.g. a flushed Redis): recreate them
                    await _quietly(self.queue.ensure_groups())
                await asyncio.sleep(1.0)
                continue
            for entry in entries:
                self.spawn(entry)

    async def _sweep_loop(self) -> None:
        while not self.stopping:
            await self.sweep_once()
            await asyncio.sleep(self.cfg.sweep_interval_s)

    async def sweep_once(self) -> None:
        """Reclaim dead workers' entries, cancel stopped lines, drive finalization, trim, metrics."""
        try:
            if self.free() > 0:
                for entry in await self.queue.reclaim(self.consumer, self.cfg.claim_idle_ms, count=self.free()):
                    if entry.id not in self.held:
                        self.spawn(entry)
            await self._cancel_stopped()
            await self.finisher.sweep()
            for lane in LANES:
                await self.queue.trim(lane)
                depth, age = await self.queue.lane_stats(lane)
                metrics.BATCH_QUEUE_DEPTH.labels(lane).set(depth)
                metrics.BATCH_OLDEST_AGE.labels(lane).set(age)
        except Exception as exc:
            logger.warning("batch sweep failed (%s: %s)", type(exc).__name__, exc)

    async def _heartbeat_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.cfg.heartbeat_s)
            await self.heartbeat_once()

    async def heartbeat_once(self) -> None:
        try:
            await self.queue.heartbeat(self.consumer, list(self.held.values()))
            now = time.time()
            for bid, line in list(self.executing):
                await self.redis.hset(self.keys.running(bid), line, now)
        except Exception as exc:
            logger.warning("batch heartbeat failed (%s)", type(exc).__name__)

    async def _cancel_stopped(self) -> None:
        """Lines of a cancelled or expired batch stop at once (cancel completes well within 60 s)."""
        for bid in {b for b, _ in self.executing}:
            if await self.redis.hexists(self.keys.batch(bid), "stop"):
                for (b, _line), task in list(self.executing.items()):
                    if b == bid:
                        task.cancel()

    # ---- entries --------------------------------------------------------------------------------
    async def handle(self, entry: Entry) -> None:
        try:
            kind = entry.fields.get("k")
            if kind == "line":
                await self._line(entry)
            elif kind == "job":
                await self._job(entry)
            elif kind == "start":
                await self.start_batch(entry.fields["b"])
                await self.queue.ack(entry)
            else:
                await self.queue.ack(entry)
        except asyncio.CancelledError:
            raise
        except Exception:  # the entry stays pending; it is reclaimed once idle (attempts are counted)
            logger.exception("batch entry %s failed", entry.id)
        finally:
            self.held.pop(entry.id, None)
            self._room.set()

    async def start_batch(self, bid: str) -> None:
        """Expand a validating batch into its lines, atomically with its move to in_progress."""
        k = self.keys
        h = await self.store.batch_any(bid)
        if not h or h["status"] != "validating":
            return
        file = decode(await self.redis.hgetall(k.file(h["input_file_id"])))
        chunks = [c async for c in self.store.content(file)] if file else []
        lines: dict[int, bytes] = dict(split_lines(chunks))
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(k.batch(bid))
            if (await pipe.hget(k.batch(bid), "status")) != b"validating" or await pipe.hexists(k.batch(bid), "stop"):
                await pipe.unwatch()
                return
            pipe.multi()
            if lines:
                pipe.hset(k.lines(bid), mapping=lines)
                pipe.expire(k.lines(bid), self.cfg.retention_s)
            for line in lines:
                self.queue.enqueue_in(pipe, "batch", {"k": "line", "b": bid, "i": str(line)})
            pipe.hset(k.batch(bid), mapping={"status": "in_progress", "in_progress_at": int(time.time()),
                                             "total": len(lines), "max_line": max(lines, default=0)})
            await pipe.execute()
        if not lines:
            await self.finisher.finalize(bid)

    async def _batch_meta(self, bid: str) -> dict[str, str]:
        meta = self._meta.get(bid)
        if meta is None:
            meta = await self.store.batch_any(bid)
            if len(self._meta) > 1000:
                self._meta.clear()
            self._meta[bid] = meta
        return meta

    async def _line(self, entry: Entry) -> None:
        bid, line = entry.fields["b"], entry.fields["i"]
        k = self.keys
        attempt = 0
        while True:
            attempt += 1
            started = await self.queue.start_line(keys=[k.batch(bid), k.results(bid), k.running(bid),
                                                        k.attempts(bid)],
                                                  args=[line, time.time(), self.cfg.max_attempts])
            if started == 0:  # batch stopped or the line already has its result
                await self.queue.ack(entry)
                return
            raw = await self.redis.hget(k.lines(bid), line)
            if raw is None:
                await self.queue.ack(entry)
                return
            obj = parse_line(raw)
            custom_id = obj.get("custom_id", "")
            if started == -1:
                await self._write(entry, bid, line, error_line(
                    custom_id, "max_attempts_exceeded",
                    f"The request failed {self.cfg.max_attempts} times."), ok=False, cost=0.0)
                return
            meta = await self._batch_meta(bid)
            status, body, cost = await self._run(obj.get("body"), meta["endpoint"], meta["tenant"],
                                                 meta.get("key_id") or None, meta.get("key_models"), key=(bid, line))
            if status is None:  # cancelled: the batch stopped while it ran
                await self.redis.hdel(k.running(bid), line)
                await self.queue.ack(entry)
                return
            if status == PREEMPTED:  # real-time work took the pool: run it again later, not an attempt
                await self.redis.hdel(k.running(bid), line)
                await self.redis.hincrby(k.attempts(bid), line, -1)
                metrics.BATCH_ITEMS.labels("batch", "preempted").inc()
                attempt -= 1
                continue
            if status in RETRYABLE and attempt < self.cfg.max_attempts:
                await self.redis.hdel(k.running(bid), line)
                await asyncio.sleep(self.cfg.retry_base_s * 2 ** (attempt - 1))
                continue
            ok = 200 <= status < 300
            await self._write(entry, bid, line, output_line(custom_id, status, body), ok=ok, cost=cost)
            return

    async def _run(self, body: Any, endpoint: str, tenant: str, key_id: str | None, models: str | None = None,
                   key: tuple[str, str] | None = None) -> tuple[int | None, Any, float]:
        """Batch rate, capacity gate, then ``execute``: (status, body, cost); status None when a stop cancelled it."""
        pool = self.pool_for(body) if self.pool_for is not None else None
        if self.rate.rpm or self.rate.tpm:
            await self.rate.acquire(tenant, sum(worst_case_tokens(body, endpoint, 256)))
        slot = self.gate.slot(pool, urgent=key is None) if self.gate is not None else _null()  # async jobs first
        async with slot as lease:
            if key is not None and await self.redis.hexists(self.keys.batch(key[0]), "stop"):
                return None, None, 0.0  # cancelled or expired while it waited for capacity: never started
            task = asyncio.create_task(self._call(body, endpoint, tenant, key_id, models))
            if key is not None:
                self.executing[key] = task
                if lease is not None:  # batch lines (not async requests) may be preempted by real-time work
                    lease.preempt = task.cancel
            try:
                return await task
            except asyncio.CancelledError:
                if self.stopping or not task.cancelled():
                    raise
                if lease is not None and lease.preempted:
                    return PREEMPTED, None, 0.0
                return None, None, 0.0
            finally:
                if key is not None:
                    self.executing.pop(key, None)

    async def _call(self, body: Any, endpoint: str, tenant: str, key_id: str | None,
                    models: str | None = None) -> tuple[int, Any, float]:
        """``models``: the submitting key's allowed models (JSON list), passed on only when restricted."""
        scope = {"models": tuple(json.loads(models))} if models else {}
        try:
            result = await asyncio.wait_for(self.execute(body, endpoint, tenant, key_id, **scope),
                                            self.cfg.item_timeout_s)
        except TimeoutError:
            return 504, {"error": {"message": "The request timed out.", "type": "upstream_error", "param": None,
                                   "code": "timeout"}}, 0.0
        except Exception as exc:
            err = find_gateway_error(exc)
            if err is None:
                err = upstream_error(f"Upstream failure ({type(exc).__name__}).", retryable=True)
            return err.status_code, err.to_dict(), 0.0
        status, out = result[0], result[1]
        cost = result[2] if len(result) > 2 and result[2] is not None else None
        if not 200 <= status < 300:
            return status, out, 0.0
        if cost is None:
            cost = line_cost(out.get("model", "") if isinstance(out, dict) else "", out)
        return status, out, float(cost)

    async def _write(self, entry: Entry, bid: str, line: str, obj: dict[str, Any], ok: bool, cost: float) -> None:
        k = self.keys
        value = ("o" if ok else "e") + json.dumps(obj, separators=(",", ":"))
        written = await self.queue.write_result(keys=[k.results(bid), k.batch(bid), k.running(bid),
                                                      k.stream(entry.lane)],
                                                args=[line, value, 1 if ok else 0, cost, GROUP, entry.id])
        if written == -1:
            return
        metrics.BATCH_ITEMS.labels("batch", "completed" if ok else "failed").inc()
        meta = await self._batch_meta(bid)
        if written >= int(meta.get("total") or 0):
            self._meta.pop(bid, None)
            await self.finisher.finalize(bid)

    # ---- async single requests ------------------------------------------------------------------
    async def _job(self, entry: Entry) -> None:
        jid = entry.fields["j"]
        key = self.keys.job(jid)
        h = decode(await self.redis.hgetall(key))
        if not h:
            await self.queue.ack(entry)
            return
        if h["status"] not in ("completed", "failed"):
            attempts = await self.redis.hincrby(key, "attempts", 1)
            await self.redis.hset(key, mapping={"status": "in_progress", "started_at": int(time.time())})
            status: int | None = 503
            cost = 0.0
            out: Any = {"error": {"message": "The request failed every attempt.", "type": "service_unavailable",
                                  "param": None, "code": "max_attempts_exceeded"}}
            for attempt in range(attempts, self.cfg.max_attempts + 1):
                status, out, cost = await self._run(json.loads(h["body"]), h["endpoint"], h["tenant"],
                                                    h.get("key_id") or None, h.get("key_models"))
                if status not in RETRYABLE or attempt == self.cfg.max_attempts:
                    break
                await asyncio.sleep(self.cfg.retry_base_s * 2 ** (attempt - 1))
            ok = status is not None and 200 <= status < 300
            await self.write_job(keys=[key], args=["completed" if ok else "failed", status,
                                                   json.dumps(out, separators=(",", ":")), int(time.time()), cost])
            metrics.BATCH_ITEMS.labels("async", "completed" if ok else "failed").inc()
            h = decode(await self.redis.hgetall(key))
        await self._after_job(h)
        await self.queue.ack(entry)

    async def _after_job(self, h: dict[str, str]) -> None:
        """Settle the job's reservation and send its webhook, each once (both survive a reclaim)."""
        key = self.keys.job(h["id"])
        if h.get("reservation") and not h.get("settled"):
            await self.ledger.settle(h["reservation"], float(h.get("cost_usd") or 0.0))
            await self.redis.hset(key, "settled", "1")
        if h.get("webhook_url") and h.get("webhook") != "sent":
            if self.sender is None:
                logger.warning("async request %s: webhook_url set but no webhook sender is configured", h["id"])
                return
            event = "async.request.completed" if h["status"] == "completed" else "async.request.failed"
            try:
                result = await self.sender.send(h["webhook_url"], event, job_object(h), event_id=h["id"],
                                                secret=os.environ.get(self.cfg.webhook_secret_env))
                await self.redis.hset(key, "webhook", delivery_status(result))
            except Exception as exc:
                logger.warning("async request %s: webhook failed (%s)", h["id"], type(exc).__name__)
                await self.redis.hset(key, "webhook", "failed")


async def _quietly(coro: Awaitable[Any]) -> None:
    try:
        await coro
    except Exception as exc:
        logger.warning("batch queue: %s", type(exc).__name__)


def delivery_status(result: Any) -> str:
    """The sender's Delivery -> "sent" (delivered, or a duplicate of a delivered event) | "failed" | "refused"."""
    status = getattr(result, "status", "delivered")
    return "sent" if status in ("delivered", "duplicate") else status


class _null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None
