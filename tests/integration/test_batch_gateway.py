"""The batch lane on the real graph (tiny models, real Redis DB 9): the official SDK end to end, a worker
killed mid-batch, malformed lines, cancel, async requests with a signed webhook retried after a 500.

Run beside other work as ``flock /tmp/llmgw-graph.lock .venv/bin/pytest -q tests/integration/test_batch_gateway.py``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
import yaml
from openai import OpenAI

from tests.conftest import TEST_CONFIG

pytestmark = pytest.mark.gateway
CHAT = "/v1/chat/completions"
BATCH_CFG = yaml.safe_load(TEST_CONFIG.read_text())["batch"]
SECRET = BATCH_CFG["ray_actor_options"]["runtime_env"]["env_vars"]["LLMGW_WEBHOOK_SECRET"]


@pytest.fixture(scope="module", autouse=True)
def clean_prefix():
    import redis

    r = redis.Redis.from_url(BATCH_CFG["redis_url"])

    def clean() -> None:
        keys = list(r.scan_iter(match=f"{BATCH_CFG['key_prefix']}:*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])

    yield
    clean()  # (the lane's stream/group live on while the graph runs; leftovers of earlier runs are harmless)


@pytest.fixture(scope="module")
def batch_lane(gateway_url: str) -> str:
    """The graph runs the BatchWorkers deployment (app/graph.py binds it when the lane has a Redis)."""
    if not _batch_replicas():
        pytest.skip("BatchWorkers is not part of this graph (app/graph.py: batch = _batch_app(...) not wired)")
    return gateway_url


@pytest.fixture()
def sdk(batch_lane: str):
    gateway_url = batch_lane

    def make(tenant: str = "batch-tenant") -> OpenAI:
        return OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", default_headers={"x-llmgw-tenant": tenant},
                      max_retries=0, timeout=60)
    return make


def lines(n: int, prefix: str = "q", max_tokens: int = 4, model: str = "small") -> bytes:
    rows = [{"custom_id": f"{prefix}-{i}", "method": "POST", "url": CHAT,
             "body": {"model": model, "messages": [{"role": "user", "content": f"{prefix} line {i}"}],
                      "max_tokens": max_tokens, "cache": False}} for i in range(n)]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def submit(client: OpenAI, data: bytes, window: str = "24h"):
    f = client.files.create(file=("input.jsonl", data), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window=window)


def wait(client: OpenAI, batch_id: str, statuses: set[str], timeout: float = 300, until=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = client.batches.retrieve(batch_id)
        if b.status in statuses or (until is not None and until(b)):
            return b
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} still {b.status}: {b.request_counts}")


def jsonl_of(client: OpenAI, file_id: str | None) -> list[dict]:
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines()] if file_id else []


def test_sdk_200_line_batch_completes_with_exactly_one_result_per_custom_id(sdk) -> None:
    client = sdk()
    batch = submit(client, lines(200, "sdk"))
    assert batch.status == "validating" and batch.object == "batch"
    b = wait(client, batch.id, {"completed", "failed", "expired", "cancelled"})
    assert b.status == "completed", b
    assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (200, 200, 0)
    out = jsonl_of(client, b.output_file_id)
    assert sorted(o["custom_id"] for o in out) == sorted(f"sdk-{i}" for i in range(200))
    first = out[0]
    assert first["response"]["status_code"] == 200 and first["error"] is None
    body = first["response"]["body"]
    assert body["object"] == "chat.completion" and body["model"] == "tiny-small" and body["usage"]["total_tokens"] > 0
    assert b.in_progress_at and b.finalizing_at and b.completed_at and b.expires_at == b.created_at + 86400
    assert sdk("someone-else").batches.list().data == []  # tenancy


def test_malformed_lines_fail_validation_by_line_and_bad_bodies_become_per_line_errors(sdk) -> None:
    client = sdk()
    failed = submit(client, lines(3, "v") + b"{this is not json\n")
    assert failed.status == "failed" and [(e.code, e.line) for e in failed.errors.data] == [("invalid_json_line", 4)]
    bad = [{"custom_id": "no-messages", "method": "POST", "url": CHAT, "body": {"model": "small"}},
           {"custom_id": "no-model", "method": "POST", "url": CHAT,
            "body": {"model": "nope", "messages": [{"role": "user", "content": "x"}]}}]
    data = lines(3, "ok") + b"".join(json.dumps(r).encode() + b"\n" for r in bad)
    b = wait(client, submit(client, data).id, {"completed", "failed"})
    assert (b.status, b.request_counts.completed, b.request_counts.failed) == ("completed", 3, 2)
    errors = {e["custom_id"]: e["response"]["status_code"] for e in jsonl_of(client, b.error_file_id)}
    assert errors == {"no-messages": 400, "no-model": 404}


def test_embeddings_lines_and_auto_lines_complete(sdk) -> None:
    """/v1/embeddings lines get the endpoint's answer; `auto` lines wait for room on every pool they may be
    routed to and release every slot afterwards (the gates' in_flight is back to 0)."""
    from ray import serve

    client = sdk("batch-emb")
    rows = [{"custom_id": f"e-{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": "all-minilm-l6-v2", "input": [f"text {i}", "more"]}} for i in range(3)]
    rows.append({"custom_id": "e-bad", "method": "POST", "url": "/v1/embeddings",
                 "body": {"model": "all-minilm-l6-v2", "input": ""}})
    f = client.files.create(file=("emb.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in rows)),
                            purpose="batch")
    emb = client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    auto = submit(client, lines(6, "auto", model="auto"))
    b = wait(client, emb.id, {"completed", "failed"})
    assert (b.status, b.request_counts.completed, b.request_counts.failed) == ("completed", 3, 1)
    out = {o["custom_id"]: o["response"] for o in jsonl_of(client, b.output_file_id)}
    assert set(out) == {"e-0", "e-1", "e-2"}
    body = out["e-1"]["body"]
    assert out["e-1"]["status_code"] == 200 and body["object"] == "list" and len(body["data"]) == 2
    assert len(body["data"][0]["embedding"]) == 384 and body["usage"]["prompt_tokens"] > 0
    assert [e["response"]["status_code"] for e in jsonl_of(client, b.error_file_id)] == [400]
    a = wait(client, auto.id, {"completed", "failed"})
    assert (a.status, a.request_counts.completed) == ("completed", 6)
    assert {o["response"]["body"]["model"] for o in jsonl_of(client, a.output_file_id)} <= {"tiny-small", "tiny-large"}
    status = serve.get_deployment_handle("BatchWorkers", app_name="llm-gateway").status.remote().result()
    assert {n: g["in_flight"] for n, g in status["gates"].items()} == {"small": 0, "large": 0}


def _batch_replicas() -> list[str]:
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if "BatchWorkers" in a["name"] and a["name"].startswith("SERVE_REPLICA")]


def test_killing_a_batch_worker_mid_batch_loses_nothing(sdk) -> None:
    import ray

    client = sdk()
    batch = submit(client, lines(300, "kill", max_tokens=24))
    wait(client, batch.id, set(), until=lambda b: b.request_counts and b.request_counts.completed >= 20)
    (name,) = _batch_replicas()
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)  # Serve starts a new replica
    b = wait(client, batch.id, {"completed", "failed", "expired", "cancelled"}, timeout=400)
    assert b.status == "completed" and b.request_counts.completed == 300
    ids = [o["custom_id"] for o in jsonl_of(client, b.output_file_id)]
    assert len(ids) == 300 and set(ids) == {f"kill-{i}" for i in range(300)}  # none lost, none twice
    assert _batch_replicas() and _batch_replicas() != [name]


def test_cancel_stops_new_items_within_60s(sdk) -> None:
    client = sdk()
    batch = submit(client, lines(1500, "cancel", max_tokens=32))
    wait(client, batch.id, set(), until=lambda b: b.request_counts and b.request_counts.completed >= 10)
    started = time.time()
    assert client.batches.cancel(batch.id).status == "cancelling"
    b = wait(client, batch.id, {"cancelled"}, timeout=60)
    assert time.time() - started < 60 and b.cancelled_at
    done = b.request_counts.completed
    assert 10 <= done < 1500
    time.sleep(2)
    assert client.batches.retrieve(batch.id).request_counts.completed == done  # nothing ran afterwards
    skipped = jsonl_of(client, b.error_file_id)
    assert len(skipped) + done == 1500 and {e["error"]["code"] for e in skipped} <= {"batch_cancelled"}


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict, bytes, int]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        status = 500 if not self.received else 200  # the first delivery fails: the sender must retry
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args) -> None:
        return None


def test_async_request_and_its_webhook_signed_and_retried_after_a_500(batch_lane: str) -> None:
    gateway_url = batch_lane
    sender = pytest.importorskip("app.webhooks.sender")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        with httpx.Client(base_url=gateway_url, timeout=30, headers={"x-llmgw-tenant": "async-tenant"}) as http:
            r = http.post("/v1/async/chat/completions", json={
                "model": "small", "max_tokens": 4, "webhook_url": hook,
                "messages": [{"role": "user", "content": "async hello"}]})
            assert r.status_code == 202, r.text
            job = r.json()
            deadline = time.time() + 120
            while job["status"] not in ("completed", "failed") and time.time() < deadline:
                time.sleep(0.3)
                job = http.get(f"/v1/async/{job['id']}").json()
            assert job["status"] == "completed" and job["response"]["status_code"] == 200
            assert job["response"]["body"]["choices"][0]["message"]["role"] == "assistant"
            assert http.get(f"/v1/async/{job['id']}", headers={"x-llmgw-tenant": "other"}).status_code == 404
            while len(_Hook.received) < 2 and time.time() < deadline:
                time.sleep(0.2)
    finally:
        server.shutdown()
    assert [s for _, _, s in _Hook.received] == [500, 200]
    (h1, _, _), (h2, body, _) = _Hook.received
    assert h1["webhook-id"] == h2["webhook-id"] == job["id"]
    assert sender.verify(SECRET, h2, body)
    event = json.loads(body)
    assert event["type"] == "async.request.completed" and event["data"]["id"] == job["id"]
