"""API keys: hashed storage, deny-by-default scopes, revocation seen by another replica, idempotent rotate."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from app.errors import AuthenticationError, NotFoundError
from app.policy.admin_models import KeyCreate, KeyUpdate
from app.policy.keys import KeyHasher, model_allowed
from app.policy.service import PolicyService
from app.policy.settings import PolicyConfig, TenantDefaults
from tests.unit.policy_redis import policy_redis_fixture  # noqa: F401  (the redis_prefix fixture)

SECRET_ENV = {"LLMGW_KEY_SECRET": "server-secret-for-tests"}


def service(redis_prefix, kind: str = "redis", clock=time.time, **cfg) -> PolicyService:
    client, prefix = redis_prefix
    policy = PolicyConfig(key_prefix=prefix, **cfg)
    return PolicyService(policy, auth_enabled=True, redis=client if kind == "redis" else None, clock=clock,
                         environ=SECRET_ENV)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_model_scopes_are_deny_by_default() -> None:
    assert not model_allowed([], "small")
    assert model_allowed(["*"], "anything")
    assert model_allowed(["tiny-*", "large"], "tiny-small") and not model_allowed(["tiny-*"], "small")


def test_hash_is_keyed_when_a_secret_is_set() -> None:
    plain, keyed = KeyHasher(None), KeyHasher("s")
    assert plain("sk-llmgw-x").startswith("sha256:") and keyed("sk-llmgw-x").startswith("hmac:")
    assert keyed("sk-llmgw-x") != KeyHasher("other")("sk-llmgw-x")


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_create_authenticate_and_the_store_holds_only_a_hash(kind: str, redis_prefix) -> None:
    svc = service(redis_prefix, kind)
    record, key = await svc.create_key(KeyCreate(tenant="acme", name="ci", models=["small"], rpm=5), "admin")
    assert key.startswith("sk-llmgw-") and len(key) >= len("sk-llmgw-") + 43
    who = await svc.authenticate(bearer(key))
    assert who.tenant == "acme" and who.key.id == record.id and who.models == ("small",)
    assert "key_hash" not in record.public() and key not in json.dumps(record.public())
    if kind == "redis":
        client, prefix = redis_prefix
        dump = b"".join([k + (await client.dump(k) or b"") async for k in client.scan_iter(f"{prefix}*")])
        secret = key[len("sk-llmgw-"):]  # may itself hold "-": compare the whole random part
        assert key.encode() not in dump and secret.encode() not in dump
    for headers in ({}, bearer("sk-llmgw-" + "A" * 43), bearer("not-a-key"), {"authorization": "Basic x"}):
        with pytest.raises(AuthenticationError) as info:
            await svc.authenticate(headers)
        assert info.value.status_code == 401 and info.value.code == "invalid_api_key"


async def test_revocation_and_limit_changes_reach_another_replica_within_one_second(redis_prefix) -> None:
    a, b = service(redis_prefix), service(redis_prefix)  # two ingress replicas, one Redis
    record, key = await a.create_key(KeyCreate(tenant="acme", models=["*"], rpm=5), "admin")
    assert (await b.authenticate(bearer(key))).key.rpm == 5  # b now holds the record in its cache
    await a.update_key(record.id, KeyUpdate(rpm=50), "admin")
    await a.revoke_key(record.id, "admin")
    start = time.monotonic()
    while True:
        try:
            await b.authenticate(bearer(key))
        except AuthenticationError as exc:
            assert "revoked" in exc.message
            break
        assert time.monotonic() - start < 1.0, "replica b still accepts a revoked key after 1 s"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_rotate_is_idempotent_and_the_old_key_stops_exactly_at_the_overlap_end(kind: str,
                                                                                      redis_prefix) -> None:
    now = [1_000_000.0]
    svc = service(redis_prefix, kind, clock=lambda: now[0], key_cache_ttl_s=0)
    record, old = await svc.create_key(KeyCreate(tenant="acme", models=["*"]), "admin")
    _, new, replayed = await svc.rotate_key(record.id, "admin", overlap_s=60, idempotency_key="idem-1")
    _, again, replayed2 = await svc.rotate_key(record.id, "admin", overlap_s=60, idempotency_key="idem-1")
    assert not replayed and replayed2 and again == new != old  # an Idempotency-Key replay: the same new key
    now[0] += 59.999
    assert (await svc.authenticate(bearer(old))).key.id == record.id  # inside the overlap
    assert (await svc.authenticate(bearer(new))).key.id == record.id
    now[0] += 0.001  # exactly at the end of the overlap
    with pytest.raises(AuthenticationError):
        await svc.authenticate(bearer(old))
    assert (await svc.authenticate(bearer(new))).key.id == record.id
    _, third, _ = await svc.rotate_key(record.id, "admin", overlap_s=0, idempotency_key="idem-2")
    assert third not in (new, old)
    with pytest.raises(AuthenticationError):
        await svc.authenticate(bearer(new))  # overlap 0: the previous key stops at once


async def test_concurrent_replays_of_one_rotate_return_one_key(redis_prefix) -> None:
    a, b = service(redis_prefix), service(redis_prefix)
    record, _ = await a.create_key(KeyCreate(tenant="acme", models=["*"]), "admin")
    results = await asyncio.gather(*((a if i % 2 else b).rotate_key(record.id, "admin", 10, "same")
                                     for i in range(6)))
    assert len({key for _, key, _ in results}) == 1 and sum(not r for _, _, r in results) == 1


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_expiry_and_unknown_ids(kind: str, redis_prefix) -> None:
    now = [5000.0]
    svc = service(redis_prefix, kind, clock=lambda: now[0])
    _, key = await svc.create_key(KeyCreate(tenant="t", models=["*"], expires_at=5010.0), "admin")
    await svc.authenticate(bearer(key))
    now[0] = 5010.0
    with pytest.raises(AuthenticationError, match="expired"):
        await svc.authenticate(bearer(key))
    with pytest.raises(NotFoundError):
        await svc.revoke_key("key_nope", "admin")


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_audit_records_every_change_without_secrets(kind: str, redis_prefix, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    svc = service(redis_prefix, kind)
    record, key = await svc.create_key(KeyCreate(tenant="acme", name="n", models=["*"]), "admin@10.0.0.1")
    await svc.update_key(record.id, KeyUpdate(tpm=1000), "admin@10.0.0.1")
    _, new, _ = await svc.rotate_key(record.id, "admin@10.0.0.1", 5, "k")
    await svc.revoke_key(record.id, "admin@10.0.0.1")
    await svc.put_tenant("acme", {"rpm": 9}, "admin@10.0.0.1")
    entries = await svc.audit.recent()
    assert [e["action"] for e in entries] == ["tenant.put", "key.revoke", "key.rotate", "key.update", "key.create"]
    assert all(e["actor"] == "admin@10.0.0.1" and e["ts"] > 0 for e in entries)
    text = json.dumps(entries) + caplog.text
    for secret in (key, new, record.key_hash, key[-20:], new[-20:]):
        assert secret not in text


async def test_tenants_yaml_defaults_then_the_store(redis_prefix) -> None:
    svc = service(redis_prefix, tenants={"acme": TenantDefaults(rpm=3, options={"cache": {"strict": True}})},
                  default_tenant=TenantDefaults(rpm=100), key_cache_ttl_s=0)
    assert (await svc.tenant("acme")).rpm == 3 and (await svc.tenant("acme")).source == "yaml"
    assert (await svc.tenant("other")).rpm == 100
    await svc.put_tenant("acme", {"rpm": 7, "budget_daily_usd": 2.5}, "admin")
    got = await svc.tenant("acme")
    assert (got.rpm, got.budget_daily_usd, got.source) == (7, 2.5, "store")
    off = PolicyService(PolicyConfig(tenants={"acme": TenantDefaults(rpm=3)}), auth_enabled=False)
    assert (await off.authenticate({"x-llmgw-tenant": "acme"})).tenant_record.rpm == 3  # auth off: header
    with pytest.raises(AuthenticationError):
        await off.authenticate({"x-llmgw-tenant": "../etc"})


async def test_auth_off_still_honours_a_presented_gateway_key() -> None:
    svc = PolicyService(PolicyConfig(), auth_enabled=False, environ={})
    record, key = await svc.create_key(KeyCreate(tenant="acme", models=["small"], rpm=2), "admin")
    who = await svc.authenticate({**bearer(key), "x-llmgw-tenant": "other"})
    assert who.key.id == record.id and who.tenant == "acme"  # the key's tenant, scope and limits
    assert (await svc.authenticate({**bearer("local"), "x-llmgw-tenant": "t"})).tenant == "t"  # SDK placeholder
    unknown = "sk-llmgw-test-admin-" + "0" * 32  # e.g. the admin key sent along: not a tenant key
    assert (await svc.authenticate({**bearer(unknown), "x-llmgw-tenant": "t"})).key is None
    await svc.revoke_key(record.id, "admin")
    svc._key_cache.drop(svc.hasher(key))
    with pytest.raises(AuthenticationError):
        await svc.authenticate(bearer(key))  # a known key that was revoked is refused
