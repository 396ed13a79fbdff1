"""The batch lane's HTTP handlers with the official ``openai`` SDK (ASGI transport, real Redis DB 9).

The handlers are mounted on a bare FastAPI app the way the ingress mounts them; the worker runs in the
same loop with a stand-in for the pipeline (the real graph is exercised in tests/integration).
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import httpx2
import pytest
from fastapi import FastAPI, Request
from openai import AsyncOpenAI, NotFoundError

from app.api import async_jobs, batches, files
from app.api.batch_scope import BatchScope
from app.batch.service import BatchService
from app.batch.settings import BatchConfig
from app.batch.store import BatchStore
from app.batch.worker import BatchWorker
from app.http_errors import install_error_handlers
from app.pipeline.context import Principal

CHAT = "/v1/chat/completions"


async def echo(body, endpoint, tenant, key_id):
    if "messages" not in body:  # what the pipeline's parse stage answers
        return 400, {"error": {"message": "Invalid value for 'messages': Field required",
                               "type": "invalid_request_error", "param": "messages", "code": None}}
    text = body["messages"][-1]["content"]
    return 200, {"id": "x", "object": "chat.completion", "model": "tiny-small", "usage": {"prompt_tokens": 1,
                 "completion_tokens": 1, "total_tokens": 2},
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": f"{tenant}:{text}"},
                              "finish_reason": "stop"}]}


def build_app(service: BatchService) -> FastAPI:
    api = FastAPI()
    install_error_handlers(api)

    def scope(request: Request) -> BatchScope:
        return BatchScope(service, Principal(tenant=request.headers.get("x-llmgw-tenant", "default")))

    @api.post("/v1/files")
    async def create_file(request: Request):
        return await files.create_file(request, scope(request))

    @api.get("/v1/files")
    async def list_files(request: Request):
        return await files.list_files(request, scope(request))

    @api.get("/v1/files/{fid}")
    async def get_file(request: Request, fid: str):
        return await files.get_file(scope(request), fid)

    @api.delete("/v1/files/{fid}")
    async def delete_file(request: Request, fid: str):
        return await files.delete_file(scope(request), fid)

    @api.get("/v1/files/{fid}/content")
    async def content(request: Request, fid: str):
        return await files.file_content(scope(request), fid)

    @api.post("/v1/batches")
    async def create_batch(request: Request):
        return await batches.create_batch(request, scope(request))

    @api.get("/v1/batches")
    async def list_batches(request: Request):
        return await batches.list_batches(request, scope(request))

    @api.get("/v1/batches/{bid}")
    async def get_batch(request: Request, bid: str):
        return await batches.get_batch(scope(request), bid)

    @api.post("/v1/batches/{bid}/cancel")
    async def cancel(request: Request, bid: str):
        return await batches.cancel_batch(scope(request), bid)

    @api.post("/v1/async/chat/completions")
    async def create_async(request: Request):
        return await async_jobs.create_async(request, scope(request), 1 << 20)

    @api.get("/v1/async/{jid}")
    async def get_async(request: Request, jid: str):
        return await async_jobs.get_async(scope(request), jid)

    return api


@pytest.fixture()
async def lane():
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url("redis://127.0.0.1:6379/9")
    prefix = f"llmgw-test-batchapi-{uuid.uuid4().hex[:8]}"
    cfg = BatchConfig(key_prefix=prefix, max_file_bytes=200_000, chunk_bytes=4096, sweep_interval_s=0.05)
    service = BatchService(BatchStore(redis, cfg), names={"small": "small"}, prices={"small": ["small"]},
                           default_max_tokens=16)
    worker = BatchWorker(service.store, echo, consumer="w1")
    task = asyncio.create_task(worker.run())
    app = build_app(service)
    yield service, app
    await worker.stop()
    task.cancel()
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


def sdk(app: FastAPI, tenant: str) -> AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")
    return AsyncOpenAI(base_url="http://test/v1", api_key="k", http_client=http,
                       default_headers={"x-llmgw-tenant": tenant})


def jsonl(n: int, bad: bool = False) -> bytes:
    rows = [{"custom_id": f"r{i}", "method": "POST", "url": CHAT,
             "body": {"model": "small", "messages": [{"role": "user", "content": f"m{i}"}]}} for i in range(n)]
    if bad:
        rows.append({"custom_id": "bad", "method": "POST", "url": CHAT, "body": {"model": "small"}})
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


async def test_sdk_round_trip_with_one_result_per_custom_id(lane) -> None:
    _, app = lane
    client = sdk(app, "acme")
    data = jsonl(120)
    f = await client.files.create(file=("in.jsonl", data), purpose="batch")
    assert f.bytes == len(data) and f.purpose == "batch" and f.id.startswith("file-")
    assert (await client.files.content(f.id)).content == data  # chunked storage gives the bytes back
    b = await client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h",
                                    metadata={"job": "nightly"})
    assert b.status == "validating" and b.metadata == {"job": "nightly"}
    for _ in range(300):
        b = await client.batches.retrieve(b.id)
        if b.status == "completed":
            break
        await asyncio.sleep(0.05)
    assert b.status == "completed" and b.request_counts.completed == 120 and b.error_file_id is None
    raw = (await client.files.content(b.output_file_id)).content
    assert (await client.files.retrieve(b.output_file_id)).bytes == len(raw)
    out = [json.loads(x) for x in raw.splitlines()]
    assert sorted(o["custom_id"] for o in out) == sorted(f"r{i}" for i in range(120))
    assert out[7]["response"]["body"]["choices"][0]["message"]["content"] == "acme:m7"
    listed = [x.id async for x in client.batches.list(limit=5)]
    assert listed == [b.id]
    other = sdk(app, "intruder")
    for call in (other.files.retrieve(f.id), other.files.content(b.output_file_id), other.batches.retrieve(b.id),
                 other.batches.cancel(b.id)):
        with pytest.raises(NotFoundError):
            await call


async def test_malformed_lines_fail_validation_with_line_numbers_and_bad_bodies_get_400(lane) -> None:
    _, app = lane
    client = sdk(app, "acme")
    f = await client.files.create(file=("in.jsonl", jsonl(2) + b"not json\n"), purpose="batch")
    b = await client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    assert b.status == "failed" and [(e.code, e.line) for e in b.errors.data] == [("invalid_json_line", 3)]
    f = await client.files.create(file=("in.jsonl", jsonl(2, bad=True)), purpose="batch")
    b = await client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    for _ in range(200):
        b = await client.batches.retrieve(b.id)
        if b.status == "completed":
            break
        await asyncio.sleep(0.05)
    assert (b.status, b.request_counts.completed, b.request_counts.failed) == ("completed", 2, 1)
    err = [json.loads(x) for x in (await client.files.content(b.error_file_id)).text.splitlines()]
    assert [(e["custom_id"], e["response"]["status_code"]) for e in err] == [("bad", 400)]


async def test_upload_limits_and_form_errors(lane) -> None:
    service, app = lane
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        big = b"x" * 250_000
        r = await http.post("/v1/files", files={"file": ("big.jsonl", big)}, data={"purpose": "batch"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        r = await http.post("/v1/files", json={"purpose": "batch"})
        assert r.status_code == 415
        r = await http.post("/v1/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "fine-tune"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
        r = await http.post("/v1/files", data={"purpose": "batch"}, files={"other": ("a", b"x")})
        assert r.status_code == 400
        r = await http.post("/v1/batches", json={"input_file_id": "file-nope", "endpoint": CHAT,
                                                 "completion_window": "24h"})
        assert r.status_code == 404
    leftovers = [k async for k in service.store.redis.scan_iter(match=f"{service.cfg.key_prefix}:file:*:tmp")]
    assert leftovers == []  # an aborted upload leaves no chunks behind


async def test_async_request_returns_a_job_id_at_once_then_its_answer(lane) -> None:
    _, app = lane
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"x-llmgw-tenant": "acme"}) as http:
        r = await http.post("/v1/async/chat/completions",
                            json={"model": "small", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 202 and r.json()["status"] == "queued"
        jid = r.json()["id"]
        for _ in range(200):
            job = (await http.get(f"/v1/async/{jid}")).json()
            if job["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert job["response"]["status_code"] == 200
        assert job["response"]["body"]["choices"][0]["message"]["content"] == "acme:hi"
        r = await http.post("/v1/async/chat/completions", json={"model": "small", "messages": []})
        assert r.status_code == 400
        r = await http.post("/v1/async/chat/completions",
                            json={"model": "small", "stream": True, "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 400
        assert (await http.get(f"/v1/async/{jid}", headers={"x-llmgw-tenant": "other"})).status_code == 404


async def test_upload_streams_in_small_chunks_with_the_file_part_before_purpose(lane) -> None:
    _, app = lane
    data = jsonl(40)
    boundary = "XyZ123"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"late.jsonl\"\r\n"
            f"Content-Type: application/jsonl\r\n\r\n").encode() + data + (
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}--\r\n").encode()

    async def chunks():
        for i in range(0, len(body), 333):  # the server sees many small chunks, split anywhere
            yield body[i:i + 333]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        r = await http.post("/v1/files", content=chunks(),
                            headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 200, r.text
        f = r.json()
        assert (f["filename"], f["bytes"], f["purpose"]) == ("late.jsonl", len(data), "batch")
        assert (await http.get(f"/v1/files/{f['id']}/content")).content == data
