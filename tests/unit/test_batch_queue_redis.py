"""Queue semantics of the batch lane against the real Redis (DB 9, a unique prefix, cleaned up).

The executor here is a plain function standing in for the gateway pipeline (the worker's
``execute`` seam); the queue, scripts, results and billing are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import ClassVar

import pytest

from app.batch.gate import CapacityGate, PoolGate
from app.batch.keys import GROUP
from app.batch.service import BatchService
from app.batch.settings import BatchConfig
from app.batch.store import BatchStore
from app.batch.worker import BatchWorker
from app.errors import NotFoundError

REDIS_URL = "redis://127.0.0.1:6379/9"
CHAT = "/v1/chat/completions"


class RecordingLedger:
    def __init__(self) -> None:
        self.reserved: list[tuple[list[str], float]] = []
        self.settled: list[tuple[str, float]] = []

    async def reserve(self, subjects: list[str], usd: float) -> str:
        self.reserved.append((subjects, usd))
        return f"r{len(self.reserved)}"

    async def settle(self, reservation_id: str, usd: float) -> None:
        self.settled.append((reservation_id, usd))


class Executor:
    """Answers like the pipeline: 400 for a body without messages, else 200 costing 0.001 per line."""

    def __init__(self, delay: float = 0.0, block: bool = False) -> None:
        self.calls: list[str] = []
        self.delay, self.block = delay, block

    async def __call__(self, body, endpoint, tenant, key_id):
        self.calls.append(body.get("messages", [{}])[0].get("content", "") if isinstance(body, dict) else "")
        if self.block:
            await asyncio.Event().wait()  # a worker that hangs (then dies)
        if self.delay:
            await asyncio.sleep(self.delay)
        if not isinstance(body, dict) or "messages" not in body:
            return 400, {"error": {"message": "messages is required", "type": "invalid_request_error",
                                   "param": "messages", "code": None}}
        return 200, {"object": "chat.completion", "model": "tiny-small", "choices": [],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1}}, 0.001


@pytest.fixture()
async def env():
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url(REDIS_URL)
    prefix = f"llmgw-test-batch-{uuid.uuid4().hex[:8]}"
    cfg = BatchConfig(key_prefix=prefix, claim_idle_ms=300, heartbeat_s=0.1, sweep_interval_s=0.05,
                      retry_base_s=0.01, max_in_flight=8)
    store = BatchStore(redis, cfg)
    ledger = RecordingLedger()
    service = BatchService(store, names={"small": "small"}, prices={"small": ["small"]}, default_max_tokens=16,
                           ledger=ledger)
    workers: list[BatchWorker] = []
    yield service, ledger, workers
    for w in workers:
        await w.stop()
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def upload(service: BatchService, lines: list[dict | bytes], tenant: str = "t1") -> str:
    up = service.new_upload()
    for item in lines:
        await up.write((item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n")
    return (await up.commit(tenant, "in.jsonl", "batch"))["id"]


def chat_line(i: int, **over) -> dict:
    return {"custom_id": f"c{i}", "method": "POST", "url": CHAT,
            "body": {"model": "small", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 4}, **over}


def start(service: BatchService, workers: list, executor, name: str, gate=None) -> BatchWorker:
    w = BatchWorker(service.store, executor, consumer=name, ledger=service.ledger, gate=gate,
                    pool_for=lambda body: "small")
    workers.append(w)
    w.run_task = asyncio.create_task(w.run())
    return w


async def wait_status(service, bid, statuses, tenant="t1", timeout=15.0) -> dict:
    for _ in range(int(timeout / 0.05)):
        b = await service.get_batch(tenant, bid)
        if b["status"] in statuses:
            return b
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch stuck in {b['status']}: {b}")


async def read_file(service, fid, tenant="t1") -> list[dict]:
    data = b"".join([c async for c in await service.file_content(tenant, fid)])
    return [json.loads(x) for x in data.splitlines()]


async def create(service, fid, window="24h", tenant="t1") -> dict:
    return await service.create_batch(tenant, "key1", {"input_file_id": fid, "endpoint": CHAT,
                                                       "completion_window": window})


async def test_batch_completes_with_one_result_per_line_and_bad_bodies_as_400(env) -> None:
    service, ledger, workers = env
    lines = [chat_line(i) for i in range(30)] + [{"custom_id": "bad", "method": "POST", "url": CHAT,
                                                  "body": {"model": "small"}}]
    fid = await upload(service, lines)
    batch = await create(service, fid)
    assert batch["status"] == "validating" and ledger.reserved[0][0] == ["tenant:t1", "key:key1"]
    executor = Executor()
    start(service, workers, executor, "w1")
    b = await wait_status(service, batch["id"], {"completed"})
    assert b["request_counts"] == {"total": 31, "completed": 30, "failed": 1}
    out = await read_file(service, b["output_file_id"])
    err = await read_file(service, b["error_file_id"])
    assert [o["custom_id"] for o in out] == [f"c{i}" for i in range(30)]  # input order
    assert [(e["custom_id"], e["response"]["status_code"]) for e in err] == [("bad", 400)]
    assert ledger.settled == [("r1", pytest.approx(0.030))]
    assert b["completed_at"] >= b["finalizing_at"] >= b["in_progress_at"] >= b["created_at"]


async def test_validation_failure_names_the_line_and_reserves_nothing(env) -> None:
    service, ledger, _ = env
    fid = await upload(service, [chat_line(1), b"{oops", chat_line(1)])
    b = await create(service, fid)
    assert b["status"] == "failed" and b["failed_at"]
    assert [(e["code"], e["line"]) for e in b["errors"]["data"]] == [("invalid_json_line", 2),
                                                                     ("duplicate_custom_id", 3)]
    assert ledger.reserved == []


async def test_reclaim_after_a_consumer_dies_loses_nothing_and_bills_once(env) -> None:
    service, ledger, workers = env
    fid = await upload(service, [chat_line(i) for i in range(12)])
    batch = await create(service, fid)
    hanging = Executor(block=True)
    dead = start(service, workers, hanging, "dead")
    for _ in range(200):  # the doomed worker holds (and started) lines
        if len(hanging.calls) >= 8:
            break
        await asyncio.sleep(0.02)
    assert len(hanging.calls) == 8  # max_in_flight
    await dead.stop()  # dies: its entries stay pending in the group, its lines marked running
    workers.remove(dead)
    alive = Executor()
    start(service, workers, alive, "alive")
    b = await wait_status(service, batch["id"], {"completed"})
    out = await read_file(service, b["output_file_id"])
    assert sorted(o["custom_id"] for o in out) == sorted(f"c{i}" for i in range(12))
    assert len(out) == 12 and b["request_counts"]["completed"] == 12
    assert sorted(alive.calls) == sorted(f"q{i}" for i in range(12))  # the dead one's lines re-ran
    assert ledger.settled == [("r1", pytest.approx(0.012))]  # each line billed once
    pending = await service.store.redis.xpending(service.store.keys.stream("batch"), GROUP)
    assert pending["pending"] == 0


async def test_result_writes_are_idempotent(env) -> None:
    service, _, _ = env
    store, k = service.store, service.store.keys
    await store.redis.hset(k.batch("b1"), mapping={"status": "in_progress", "completed": 0, "failed": 0})
    args = ["7", 'o{"custom_id":"x"}', 1, 0.5, GROUP, ""]
    keys = [k.results("b1"), k.batch("b1"), k.running("b1"), k.stream("batch")]
    assert await store.queue.write_result(keys=keys, args=args) == 1
    assert await store.queue.write_result(keys=keys, args=["7", 'o{"custom_id":"again"}', 1, 0.5, GROUP, ""]) == -1
    h = await store.batch_any("b1")
    assert h["completed"] == "1" and float(h["cost_usd"]) == 0.5
    assert await store.redis.hget(k.results("b1"), "7") == b'o{"custom_id":"x"}'


async def test_exactly_once_billing_across_a_restart_after_results_were_written(env) -> None:
    """A worker dies after writing every result but before finalizing: the next one finalizes, settles once."""
    service, ledger, workers = env
    fid = await upload(service, [chat_line(i) for i in range(5)])
    batch = await create(service, fid)
    w = BatchWorker(service.store, Executor(), consumer="w1", ledger=service.ledger)
    await service.store.queue.ensure_groups()
    w.finisher.finalize = _noop  # crash point: results written, finalization never ran
    for entry in await service.store.queue.read("w1", 10, 100):
        w.held[entry.id] = entry
        await w.handle(entry)
    for entry in await service.store.queue.read("w1", 10, 100):
        w.held[entry.id] = entry
        await w.handle(entry)
    assert (await service.get_batch("t1", batch["id"]))["status"] == "in_progress"
    assert ledger.settled == []
    start(service, workers, Executor(), "w2")  # the restarted worker's sweeper finishes it
    b = await wait_status(service, batch["id"], {"completed"})
    assert b["request_counts"]["completed"] == 5
    await asyncio.sleep(0.3)  # more sweeps: nothing is settled twice
    assert ledger.settled == [("r1", pytest.approx(0.005))]


async def _noop(*_a, **_k) -> None:
    return None


async def test_cancel_stops_new_items_and_unstarted_lines_are_not_billed(env) -> None:
    service, ledger, workers = env
    fid = await upload(service, [chat_line(i) for i in range(40)])
    batch = await create(service, fid)
    executor = Executor(delay=0.2)
    gate = PoolGate("small", max_ongoing=8, max_num_seqs=8, share=0.25, busy_share=0.25)  # 2 at a time
    start(service, workers, executor, "w1", gate=CapacityGate({"small": gate}))  # 8 held, 6 wait at the gate
    while len(executor.calls) < 10:
        await asyncio.sleep(0.02)
    cancelled = await service.cancel_batch("t1", batch["id"])
    assert cancelled["status"] == "cancelling" and cancelled["cancelling_at"]
    calls_at_cancel = len(executor.calls)
    b = await wait_status(service, batch["id"], {"cancelled"}, timeout=10)
    assert len(executor.calls) == calls_at_cancel  # nothing started after the cancel
    counts = b["request_counts"]
    assert counts["total"] == 40 and counts["completed"] < 40
    err = await read_file(service, b["error_file_id"])
    out = await read_file(service, b["output_file_id"]) if b["output_file_id"] else []
    assert len(out) + len(err) == 40 and {e["error"]["code"] for e in err} == {"batch_cancelled"}
    assert ledger.settled == [("r1", pytest.approx(0.001 * counts["completed"]))]
    with pytest.raises(Exception, match="cannot be cancelled"):
        await service.cancel_batch("t1", batch["id"])


async def test_expiry_keeps_partial_output_and_reports_the_rest(env) -> None:
    service, _, workers = env
    fid = await upload(service, [chat_line(i) for i in range(60)])
    t0 = time.time()
    batch = await create(service, fid, window="1s")
    assert float((await service.store.batch_any(batch["id"]))["expires_at"]) >= t0 + 1  # a whole second
    start(service, workers, Executor(delay=0.15), "w1")
    b = await wait_status(service, batch["id"], {"expired"}, timeout=10)
    assert b["expired_at"] and 0 < b["request_counts"]["completed"] < 60
    err = await read_file(service, b["error_file_id"])
    assert {e["error"]["code"] for e in err} == {"batch_expired"}
    assert len(err) + b["request_counts"]["completed"] == 60


async def test_tenants_never_see_each_other(env) -> None:
    service, _, _ = env
    fid = await upload(service, [chat_line(1)], tenant="t1")
    batch = await create(service, fid)
    job = await service.create_job("t1", None, CHAT, {"model": "small", "messages": [{"role": "user",
                                                                                       "content": "x"}]})
    for call in (service.get_file("t2", fid), service.file_content("t2", fid), service.get_batch("t2", batch["id"]),
                 service.cancel_batch("t2", batch["id"]), service.get_job("t2", job["id"]),
                 create(service, fid, tenant="t2")):
        with pytest.raises(NotFoundError):
            await call
    assert (await service.list_batches("t2"))["data"] == []


async def test_async_request_completes_and_sends_one_webhook(env) -> None:
    service, ledger, workers = env

    class Sender:
        def __init__(self) -> None:
            self.sent: list[tuple] = []

        async def send(self, url, event_type, data, *, event_id, secret):
            self.sent.append((url, event_type, data["status"], event_id))

    sender = Sender()
    job = await service.create_job("t1", None, CHAT, {"model": "small", "webhook_url": "http://hook.example/x",
                                                      "messages": [{"role": "user", "content": "hello"}]})
    assert job["status"] == "queued" and job["id"].startswith("asyncreq_")
    w = BatchWorker(service.store, Executor(), consumer="w1", ledger=ledger, sender=sender)
    workers.append(w)
    w.run_task = asyncio.create_task(w.run())
    for _ in range(200):
        got = await service.get_job("t1", job["id"])
        if got["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    assert got["response"]["status_code"] == 200 and got["response"]["body"]["object"] == "chat.completion"
    await asyncio.sleep(0.2)
    assert sender.sent == [("http://hook.example/x", "async.request.completed", "completed", job["id"])]
    assert ledger.settled == [("r1", pytest.approx(0.001))]


async def test_batch_webhook_is_sent_once_when_the_batch_ends(env) -> None:
    service, ledger, workers = env

    class Sender:
        sent: ClassVar[list[tuple]] = []

        async def send(self, url, event_type, data, *, event_id, secret):
            self.sent.append((event_type, data["id"], data["status"], event_id))

    fid = await upload(service, [chat_line(i) for i in range(6)])
    batch = await service.create_batch("t1", None, {"input_file_id": fid, "endpoint": CHAT, "completion_window": "24h",
                                                    "webhook_url": "https://hooks.example/b"})
    for name in ("w1", "w2"):  # two workers race to finalize
        w = BatchWorker(service.store, Executor(), consumer=name, ledger=ledger, sender=Sender())
        workers.append(w)
        w.run_task = asyncio.create_task(w.run())
    await wait_status(service, batch["id"], {"completed"})
    await asyncio.sleep(0.3)
    assert Sender.sent == [("batch.completed", batch["id"], "completed", f"{batch['id']}:completed")]
    assert len(ledger.settled) == 1


async def test_lane_depth_age_and_trim(env) -> None:
    service, _, _ = env
    q = service.store.queue
    await q.ensure_groups()
    for i in range(3):
        await q.enqueue("batch", {"k": "noop", "i": str(i)})
    await asyncio.sleep(0.05)
    (first,) = await q.read("c1", 1, 100)
    depth, age = await q.lane_stats("batch")
    assert depth == 3 and age >= 0.05  # 1 pending + 2 never delivered; the oldest is the pending one
    await q.ack(first)
    await q.trim("batch")
    assert await service.store.redis.xlen(service.store.keys.stream("batch")) == 2  # acked entry dropped
    for entry in await q.read("c1", 5, 100):
        await q.ack(entry)
    await q.trim("batch")
    assert (await q.lane_stats("batch"))[0] == 0
    assert await service.store.redis.xlen(service.store.keys.stream("batch")) == 0
