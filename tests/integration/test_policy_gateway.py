"""The policy layer through the real graph: keys over the admin API, 429s with OpenAI's headers, scopes,
cost headers, usage, revocation — on the tiny models (auth off: a presented gateway key still applies)."""

from __future__ import annotations

import json
import os
import time
import uuid

import httpx
import pytest

pytestmark = pytest.mark.gateway


@pytest.fixture()
def admin(gateway_url: str):
    key = os.environ.get("LLMGW_ADMIN_KEY")
    probe = httpx.get(f"{gateway_url}/admin/keys", headers={"authorization": f"Bearer {key or '-'}"}, timeout=10)
    if probe.status_code == 404:
        pytest.skip("the policy admin routes are not wired into the ingress yet")
    if not key or probe.status_code == 403:
        pytest.skip("the test graph runs without LLMGW_ADMIN_KEY (tests/conftest.py sets it)")
    deadline = time.monotonic() + 180  # the engines (and the guardrail classifier) may still be warming up
    while chat(gateway_url, tenant="pol-warmup").status_code != 200 and time.monotonic() < deadline:
        time.sleep(2)
    with httpx.Client(base_url=gateway_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as c:
        yield c


def chat(url: str, key: str | None = None, *, model: str = "small", stream: bool = False, tenant: str | None = None,
         max_tokens: int = 8) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if tenant:
        headers["x-llmgw-tenant"] = tenant
    body = {"model": model, "max_tokens": max_tokens, "cache": False, "stream": stream,
            "messages": [{"role": "user", "content": f"policy test {uuid.uuid4().hex}"}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def test_key_limits_scope_cost_usage_and_revocation(gateway_url: str, admin: httpx.Client) -> None:
    made = admin.post("/admin/keys", json={"tenant": f"pol-{uuid.uuid4().hex[:6]}", "models": ["small", "tiny-small"],
                                           "rpm": 3}).json()
    key, key_id = made["key"], made["id"]
    answers = [chat(gateway_url, key) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429], [r.text[:300] for r in answers]
    ok, limited = answers[0], answers[3]
    assert ok.headers["x-ratelimit-limit-requests"] == "3" and ok.headers["x-ratelimit-remaining-requests"] == "2"
    assert float(ok.headers["x-llmgw-cost-usd"]) > 0
    err = limited.json()["error"]
    assert (err["type"], err["code"]) == ("requests", "rate_limit_exceeded")
    assert int(limited.headers["retry-after"]) >= 1 and int(limited.headers["retry-after-ms"]) > 0
    assert key not in limited.text
    denied = chat(gateway_url, key, model="large")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"
    usage = httpx.get(f"{gateway_url}/v1/usage", headers={"authorization": f"Bearer {key}"}, timeout=10).json()
    row = next(r for r in usage["data"] if r["id"] == key_id)
    assert row["requests"] == 3 and row["spend_usd"] > 0
    assert admin.delete(f"/admin/keys/{key_id}").json()["status"] == "revoked"
    time.sleep(1.0)  # every replica within 1 s
    assert chat(gateway_url, key).status_code == 401


def test_stream_carries_the_headers_and_the_cost_in_its_usage_chunk(gateway_url: str, admin: httpx.Client) -> None:
    key = admin.post("/admin/keys", json={"tenant": "pol-stream", "models": ["*"], "tpm": 100_000}).json()["key"]
    r = chat(gateway_url, key, stream=True)
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == "100000"
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert chunks[-1]["usage"]["completion_tokens"] > 0 and chunks[-1]["usage"]["cost_usd"] > 0


def test_tenant_limits_with_auth_off(gateway_url: str, admin: httpx.Client) -> None:
    tenant = f"pol-t-{uuid.uuid4().hex[:6]}"
    assert admin.put(f"/admin/tenants/{tenant}", json={"rpm": 2}).json()["rpm"] == 2
    time.sleep(0.6)  # past the tenant cache of every replica
    answers = [chat(gateway_url, tenant=tenant) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429], [r.text[:300] for r in answers]
    assert chat(gateway_url, tenant=f"{tenant}-other").status_code == 200
