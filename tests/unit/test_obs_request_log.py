"""Request log: JSONL with rotation (several writers), PII redaction, tenant filtering, Redis stream retention."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from app.observability.metrics import REQUEST_LOG_DROPPED
from app.observability.request_log import (
    RequestLogger,
    RequestLogRecord,
    iter_all_records,
    iter_records,
    iter_stream_records,
    stream_key,
)
from app.observability.settings import RequestLogConfig


def _record(i: int, tenant: str = "acme", **kw) -> RequestLogRecord:
    fields = {"trace_id": f"{i:032x}", "endpoint": "chat", "model": "auto", "route": "small",
              "messages": [{"role": "user", "content": f"question {i}"}], "response": f"answer {i}",
              "latency_ms": 12.5, "prompt_tokens": 3, "completion_tokens": 4, **kw}
    return RequestLogRecord(request_id=f"r{i}", tenant=tenant, **fields)


def test_jsonl_redacted_with_tenant_filter(tmp_path) -> None:
    path = tmp_path / "requests.jsonl"
    log = RequestLogger(RequestLogConfig(path=str(path)))
    secret = "sk-proj-abcdefghijklmnop1234"
    log.log(_record(1, messages=[{"role": "user", "content": f"I'm bob@corp.com, key {secret}"}],
                    response="Call me at +1 415 555 2671", evaluation={"thumbs": "up"}))
    log.log(_record(2, tenant="other"))
    assert log.flush()
    raw = path.read_text()
    assert secret not in raw and "bob@corp.com" not in raw and "555 2671" not in raw
    (mine,) = iter_records(str(path), tenant="acme")
    assert mine.messages[0]["content"] == "I'm [EMAIL], key [SECRET]"
    assert mine.response == "Call me at [PHONE]"
    assert mine.redactions == {"EMAIL": 1, "SECRET": 1, "PHONE": 1}
    assert mine.evaluation == {"thumbs": "up"} and mine.trace_id == f"{1:032x}"
    assert [r.request_id for r in iter_records(str(path), tenant="other")] == ["r2"]
    assert list(iter_records(str(path), tenant="nobody")) == []
    assert {r.tenant for r in iter_all_records(str(path))} == {"acme", "other"}
    log.close()


def test_redaction_can_be_off(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    log = RequestLogger(RequestLogConfig(path=str(path), redact_pii=False))
    log.log(_record(1, response="bob@corp.com"))
    log.close()
    assert next(iter_records(str(path), tenant="acme")).response == "bob@corp.com"


def test_rotation_keeps_newest_within_budget_with_concurrent_writers(tmp_path) -> None:
    path = tmp_path / "requests.jsonl"
    cfg = RequestLogConfig(path=str(path), max_bytes=4000, backup_count=2)
    loggers = [RequestLogger(cfg), RequestLogger(cfg)]  # two writers share the file, like two replicas

    def write(log: RequestLogger, start: int) -> None:
        for i in range(start, start + 100):
            log.log(_record(i))

    threads = [threading.Thread(target=write, args=(log, k * 1000)) for k, log in enumerate(loggers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in loggers:
        log.close()
    files = sorted(p.name for p in tmp_path.glob("requests.jsonl*") if not p.name.endswith(".lock"))
    assert files == ["requests.jsonl", "requests.jsonl.1", "requests.jsonl.2"]
    for p in tmp_path.glob("requests.jsonl*"):
        assert p.stat().st_size <= 4000
        for line in p.read_text().splitlines():
            json.loads(line)  # no torn or interleaved lines
    kept = list(iter_records(str(path), tenant="acme"))
    assert 0 < len(kept) < 200  # older records rotated away
    ids = [int(r.request_id[1:]) for r in kept]
    assert 99 in ids or 1099 in ids  # the newest survive
    newest_first_writer = [i for i in ids if i < 1000]
    assert newest_first_writer == sorted(newest_first_writer)  # oldest-first order


def test_full_queue_drops_without_blocking(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    log = RequestLogger(RequestLogConfig(path=str(path), queue_size=1))
    gate = threading.Event()
    original = log._write
    log._write = lambda records: (gate.wait(5), original(records))  # a stuck sink
    before = REQUEST_LOG_DROPPED.labels("queue")._value.get()
    started = time.perf_counter()
    results = [log.log(_record(i)) for i in range(50)]
    elapsed = time.perf_counter() - started
    gate.set()
    log.close()
    assert elapsed < 1.0
    assert results.count(False) >= 48
    assert REQUEST_LOG_DROPPED.labels("queue")._value.get() - before == results.count(False)


def test_disabled_logger_is_a_no_op() -> None:
    log = RequestLogger(RequestLogConfig())
    assert log.log(_record(1)) is False and log._thread is None


@pytest.fixture()
def redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis not running on 127.0.0.1:6379")
    prefix = f"llmgw:test:obs:{uuid.uuid4().hex[:8]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def test_redis_stream_per_tenant_with_maxlen(redis_client) -> None:
    client, prefix = redis_client
    cfg = RequestLogConfig(redis_url="redis://127.0.0.1:6379/0", redis_stream=prefix, stream_max_len=100)
    log = RequestLogger(cfg, redis_client=client)
    for i in range(1000):
        log.log(_record(i, tenant="acme" if i % 10 else "other"))
    log.close()
    acme_len = client.xlen(stream_key(prefix, "acme"))
    assert 100 <= acme_len < 900  # MAXLEN ~ trims whole stream nodes: at least 100 kept, far fewer than 900
    mine = list(iter_stream_records(client, prefix, tenant="acme"))
    assert len(mine) == acme_len and {r.tenant for r in mine} == {"acme"}
    assert mine[-1].request_id == "r999"
    theirs = list(iter_stream_records(client, prefix, tenant="other"))
    assert len(theirs) == 100 and {r.tenant for r in theirs} == {"other"}


def test_redis_stream_time_retention(redis_client) -> None:
    client, prefix = redis_client
    key = stream_key(prefix, "acme")
    old_ms = int((time.time() - 3600) * 1000)
    for i in range(300):  # an hour-old backlog, written directly with old ids
        client.xadd(key, {"record": json.dumps(_record(i).to_dict())}, id=f"{old_ms}-{i + 1}")
    cfg = RequestLogConfig(redis_url="redis://127.0.0.1:6379/0", redis_stream=prefix, stream_max_age_s=60)
    log = RequestLogger(cfg, redis_client=client)
    log.log(_record(1000))
    log.close()
    remaining = [r.request_id for r in iter_stream_records(client, prefix, tenant="acme")]
    assert "r1000" in remaining and len(remaining) < 301  # MINID ~ dropped (most of) the old entries


def test_redis_failure_is_counted_not_raised(tmp_path) -> None:
    cfg = RequestLogConfig(path=str(tmp_path / "r.jsonl"), redis_url="redis://127.0.0.1:1/0", redis_stream="x")
    log = RequestLogger(cfg)
    before = REQUEST_LOG_DROPPED.labels("redis")._value.get()
    log.log(_record(1))
    log.close()
    assert REQUEST_LOG_DROPPED.labels("redis")._value.get() - before == 1
    assert [r.request_id for r in iter_records(cfg.path, tenant="acme")] == ["r1"]  # the file still got it
