"""Redis stopped mid-test (our own redis-server on port 6396): the configured fail modes, never a 500."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis

from app.errors import GatewayError
from app.observability import metrics
from app.policy.admin_models import KeyCreate
from app.policy.factory import policy_redis
from tests.unit.test_policy_stages import gateway, request, run

PORT = 6396


@pytest.fixture
def own_redis():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    proc = subprocess.Popen(["redis-server", "--port", str(PORT), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sync = redis.Redis(port=PORT)
    for _ in range(100):
        try:
            sync.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(5)


def stop(proc) -> None:
    proc.terminate()
    proc.wait(5)


def down_count(limit: str, mode: str) -> float:
    return metrics.POLICY_STORE_DOWN.labels(limit, mode)._value.get()


async def outcome(pipe, ctx):
    try:
        await run(pipe, ctx)
        return 200, None
    except GatewayError as err:
        return err.status_code, err


async def test_fail_open_limits_keep_serving_and_count_it(own_redis) -> None:
    client = policy_redis(f"redis://127.0.0.1:{PORT}/0", 0.3)
    _, pipe = gateway((client, "down-open"), auth=False, tenants={"acme": {"rpm": 100, "tpm": 100_000}},
                        fail_mode={"requests": "open", "tokens": "open", "budget": "open"})
    assert (await outcome(pipe, request(None, tenant="acme")))[0] == 200
    stop(own_redis)
    before = down_count("requests", "open")
    status, err = await outcome(pipe, request(None, tenant="acme"))
    assert status == 200 and err is None
    assert down_count("requests", "open") == before + 1
    await client.aclose()


async def test_fail_closed_limits_answer_503_and_auth_always_fails_closed(own_redis) -> None:
    client = policy_redis(f"redis://127.0.0.1:{PORT}/0", 0.3)
    svc, pipe = gateway((client, "down-closed"), fail_mode={"requests": "open", "tokens": "closed",
                                                             "budget": "closed"}, key_cache_ttl_s=0.5)
    _, key = await svc.create_key(KeyCreate(tenant="acme", models=["*"], rpm=100, tpm=100_000), "admin")
    assert (await outcome(pipe, request(key)))[0] == 200  # the key is now in the 0.5 s cache
    stop(own_redis)
    status, err = await outcome(pipe, request(key))  # cached key; rpm open; tpm closed
    assert status == 503 and err.code == "policy_store_unavailable" and err.headers["retry-after"] == "1"
    time.sleep(0.6)  # past the key cache: the key itself cannot be checked
    status, err = await outcome(pipe, request(key))
    assert status == 503 and "API key" in err.message
    for _ in range(3):
        status, _ = await outcome(pipe, request(key))
        assert status in (503,)
    await client.aclose()
