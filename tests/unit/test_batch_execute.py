"""Batch lines for /v1/embeddings: answered as POST /v1/embeddings answers (shape, refusals), through the
worker and the official SDK on the real Redis (DB 9); the embedding model is a deterministic stand-in."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx2
import pytest
from openai import AsyncOpenAI

from app.batch.execute import pipeline_executor
from app.batch.service import BatchService
from app.batch.settings import BatchConfig
from app.batch.store import BatchStore
from app.batch.worker import BatchWorker
from tests.unit.test_batch_api import build_app

EMB = "/v1/embeddings"
MODEL = "all-minilm-l6-v2"


class Embedder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.active = self.peak = 0

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(texts)
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.01)
        self.active -= 1
        return [[float(len(t))] + [0.0] * 383 for t in texts]


async def test_an_embeddings_line_gets_the_endpoint_answer_and_its_refusals() -> None:
    embed = Embedder()
    execute = pipeline_executor(None, embed=embed)  # embeddings never reach the chat pipeline
    status, body, cost = await execute({"model": MODEL, "input": ["ab", "abcd"]}, EMB, "t1", None)
    assert status == 200 and cost == 0.0
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][1]["embedding"][0] == 4.0
    assert len(body["data"][0]["embedding"]) == 384 and body["usage"]["prompt_tokens"] > 0
    status, body, _ = await execute({"model": "nope", "input": "x"}, EMB, "t1", None)
    assert status == 404 and body["error"]["code"] == "model_not_found"
    status, body, _ = await execute({"model": MODEL}, EMB, "t1", None)
    assert status == 400 and body["error"]["param"] == "input"
    status, body, _ = await execute({"model": MODEL, "input": "x", "dimensions": 8}, EMB, "t1", None)
    assert status == 400 and body["error"]["param"] == "dimensions"
    status, body, _ = await execute("not an object", EMB, "t1", None)
    assert status == 400
    assert embed.calls == [["ab", "abcd"]]  # refused lines never reach the model


async def test_embeddings_lines_run_at_most_embed_concurrency_at_once() -> None:
    embed = Embedder()
    execute = pipeline_executor(None, embed=embed, embed_concurrency=2)
    results = await asyncio.gather(*(execute({"model": MODEL, "input": f"t{i}"}, EMB, "t", None) for i in range(8)))
    assert all(r[0] == 200 for r in results) and embed.peak == 2


async def test_without_an_embedder_an_embeddings_line_is_a_404() -> None:
    status, body = await pipeline_executor(None)({"model": MODEL, "input": "x"}, EMB, "t", None)
    assert status == 404 and body["error"]["code"] == "unknown_url"


@pytest.fixture()
async def lane():
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url("redis://127.0.0.1:6379/9")
    prefix = f"llmgw-test-batchemb-{uuid.uuid4().hex[:8]}"
    cfg = BatchConfig(key_prefix=prefix, sweep_interval_s=0.05)
    service = BatchService(BatchStore(redis, cfg), names={"small": "small"}, prices={"small": ["small"]},
                           default_max_tokens=16)
    worker = BatchWorker(service.store, pipeline_executor(None, embed=Embedder()), consumer="w1")
    task = asyncio.create_task(worker.run())
    yield build_app(service)
    await worker.stop()
    task.cancel()
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_sdk_embeddings_batch_round_trip(lane) -> None:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=lane), base_url="http://test")
    client = AsyncOpenAI(base_url="http://test/v1", api_key="k", http_client=http,
                         default_headers={"x-llmgw-tenant": "t1"})
    rows = [{"custom_id": "one", "method": "POST", "url": EMB, "body": {"model": MODEL, "input": "hello"}},
            {"custom_id": "two", "method": "POST", "url": EMB, "body": {"model": MODEL, "input": ["a", "bb"],
                                                                       "encoding_format": "base64"}},
            {"custom_id": "bad", "method": "POST", "url": EMB, "body": {"model": "gpt-x", "input": "hi"}}]
    f = await client.files.create(file=("e.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in rows)),
                                  purpose="batch")
    b = await client.batches.create(input_file_id=f.id, endpoint=EMB, completion_window="24h")
    for _ in range(200):
        b = await client.batches.retrieve(b.id)
        if b.status == "completed":
            break
        await asyncio.sleep(0.05)
    assert b.status == "completed" and (b.request_counts.completed, b.request_counts.failed) == (2, 1)
    out = {r["custom_id"]: r for r in map(json.loads, (await client.files.content(b.output_file_id)).text.splitlines())}
    assert set(out) == {"one", "two"}
    assert out["one"]["response"]["status_code"] == 200 and len(out["one"]["response"]["body"]["data"]) == 1
    assert isinstance(out["two"]["response"]["body"]["data"][1]["embedding"], str)  # base64, as requested
    err = [json.loads(x) for x in (await client.files.content(b.error_file_id)).text.splitlines()]
    assert [(e["custom_id"], e["response"]["status_code"]) for e in err] == [("bad", 404)]
