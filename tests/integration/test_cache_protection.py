"""Per-tenant protection of cache entries at rest, against the real Redis (DB 9, unique prefix)."""

from __future__ import annotations

import asyncio
import base64
import os

import numpy as np
import pytest
import redis

from app.caching.protection import EntryProtector, ProtectionConfigError
from tests.integration.test_cache_redis import REDIS_URL, cache_for, prefix, resp  # noqa: F401 (fixture)
from tests.unit.test_cache import q, vec

KEY_ENV = "LLMGW_TEST_CACHE_KEY"
PROMPT, ANSWER = "What is the door code for the Zurich office?", "The door code is 4417-alpha."


@pytest.fixture()
def cache_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv(KEY_ENV, key)
    return key


def raw_values(client: redis.Redis, key_prefix: str) -> bytes:
    return b"".join(b"".join(client.hgetall(k).values()) for k in client.scan_iter(match=f"{key_prefix}:e:*"))


def test_encrypted_tenant_is_unreadable_in_redis_and_rebuilds(prefix: str, cache_key: str,  # noqa: F811
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    modes = {"acme": "encrypt"}
    emb = vec(30)

    async def go():
        cache = cache_for(prefix, protection=modes, encryption_key_env=KEY_ENV)
        await cache.store_response(q(PROMPT, tenant="acme", emb=emb), resp(ANSWER))
        await cache.store_response(q("plain tenant question", tenant="globex"), resp("plain answer"))
        await cache.redis.close()
        raw = raw_values(client, prefix)
        assert b"door code" not in raw and b"4417" not in raw and emb.tobytes()[:64] not in raw
        assert b"plain answer" in raw  # tenants without the option are stored as before

        rebuilt = cache_for(prefix, protection=modes, encryption_key_env=KEY_ENV)
        assert await rebuilt.rebuild() == 2
        hit = await rebuilt.lookup(q("What's the door code for the Zurich office?", tenant="acme",
                                     emb=vec(31, emb, 0.01)))
        assert hit is not None and hit.layer == "semantic" and hit.response.text == ANSWER
        await rebuilt.redis.close()

        monkeypatch.setenv(KEY_ENV, base64.b64encode(os.urandom(32)).decode())  # another key
        wrong = cache_for(prefix, protection=modes, encryption_key_env=KEY_ENV)
        assert await wrong.rebuild() == 1  # the sealed entry is skipped, not served, no crash
        assert await wrong.lookup(q(PROMPT, tenant="acme")) is None
        await wrong.redis.close()

    asyncio.run(go())


def test_sealed_value_moved_to_another_key_does_not_open(cache_key: str) -> None:
    protector = EntryProtector({"*": "encrypt"}, KEY_ENV)
    fields = {"meta": b'{"tenant": "acme"}', "emb": np.ones(4, np.float32).tobytes()}
    sealed = protector.seal("p:e:1", "acme", fields)
    as_read = {k.encode(): v for k, v in sealed.items()}
    assert protector.open("p:e:1", as_read) == {k.encode(): v for k, v in fields.items()}
    with pytest.raises(ValueError):
        protector.open("p:e:2", as_read)
    with pytest.raises(ValueError):
        protector.open("p:e:1", {**as_read, b"tenant": b"globex"})


def test_redact_tenant_never_caches_pii(prefix: str) -> None:  # noqa: F811
    client = redis.Redis.from_url(REDIS_URL)

    async def go():
        cache = cache_for(prefix, protection={"*": "redact", "trusted": "none"})
        await cache.store_response(q("Write to bob@corp.com about the invoice"), resp("Dear Bob, ..."))
        await cache.store_response(q("Who is on call?"), resp("Call +1 415 555 2671"))
        await cache.store_response(q("What is Ray Serve?"), resp("A serving library."))
        await cache.store_response(q("Write to bob@corp.com", tenant="trusted"), resp("ok"))
        await cache.redis.close()
        assert await cache.lookup(q("Write to bob@corp.com about the invoice")) is None
        assert cache.stats()["not_stored_pii"] == 2 and len(cache.store) == 2
        raw = raw_values(client, prefix)
        assert b"555 2671" not in raw and b"A serving library." in raw

    asyncio.run(go())


def test_encrypt_without_a_key_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ProtectionConfigError, match=KEY_ENV):
        EntryProtector({"acme": "encrypt"}, KEY_ENV)
    monkeypatch.setenv(KEY_ENV, base64.b64encode(b"short").decode())
    with pytest.raises(ProtectionConfigError, match="32 bytes"):
        EntryProtector({"acme": "encrypt"}, KEY_ENV)
    EntryProtector({"acme": "redact"}, KEY_ENV)  # no key needed without encryption
