"""Admin and usage handlers (app/api/admin_keys.py, admin_tenants.py, usage.py) over a real Redis."""

from __future__ import annotations

import pytest

from app.api import admin_keys, admin_tenants, usage
from app.errors import GatewayError
from app.policy.admin_models import KeyCreate
from app.policy.service import PolicyService
from app.policy.settings import PolicyConfig
from tests.unit.policy_redis import policy_redis_fixture  # noqa: F401  (the redis_prefix fixture)
from tests.unit.test_policy_stages import gateway, request, run


def svc_of(redis_prefix) -> PolicyService:
    client, prefix = redis_prefix
    return PolicyService(PolicyConfig(key_prefix=prefix), auth_enabled=True, redis=client, environ={})


async def test_key_lifecycle_over_the_admin_api(redis_prefix) -> None:
    svc = svc_of(redis_prefix)
    created = await admin_keys.create_key(svc, {"tenant": "acme", "name": "ci", "models": ["small"], "rpm": 60,
                                                "budget_daily_usd": 5}, "admin@test")
    key, key_id = created["key"], created["id"]
    assert key.startswith("sk-llmgw-") and created["status"] == "active" and "key_hash" not in created
    listed = await admin_keys.list_keys(svc, {"tenant": "acme"})
    assert [k["id"] for k in listed["data"]] == [key_id] and key not in str(listed)
    assert (await admin_keys.get_key(svc, key_id))["rpm"] == 60
    patched = await admin_keys.update_key(svc, key_id, {"rpm": None, "models": ["*"]}, "admin@test")
    assert patched["rpm"] is None and patched["models"] == ["*"]
    one = await admin_keys.rotate_key(svc, key_id, {"overlap_s": 30}, {"idempotency-key": "abc"}, "admin@test")
    two = await admin_keys.rotate_key(svc, key_id, {"overlap_s": 30}, {"idempotency-key": "abc"}, "admin@test")
    assert one["key"] == two["key"] != key and (one["replayed"], two["replayed"]) == (False, True)
    assert (await admin_keys.revoke_key(svc, key_id, "admin@test"))["status"] == "revoked"
    with pytest.raises(GatewayError) as info:
        await admin_keys.rotate_key(svc, key_id, {}, {}, "admin@test")
    assert info.value.status_code == 400 and info.value.code == "key_not_active"


@pytest.mark.parametrize("body,param", [({"tenant": "acme", "rpm": 0}, "rpm"), ({"tenant": "a b"}, None),
                                        ({"tenant": "acme", "scopes": ["*"]}, "scopes"), ({}, "tenant")])
async def test_bad_bodies_are_400s(body, param, redis_prefix) -> None:
    with pytest.raises(GatewayError) as info:
        await admin_keys.create_key(svc_of(redis_prefix), body)
    assert info.value.status_code == 400
    if param:
        assert info.value.param == param


async def test_unknown_ids_are_404s(redis_prefix) -> None:
    svc = svc_of(redis_prefix)
    for call in (admin_keys.get_key(svc, "key_x"), admin_keys.revoke_key(svc, "key_x"),
                 admin_keys.update_key(svc, "key_x", {"rpm": 3}), admin_keys.rotate_key(svc, "key_x", {}, {})):
        with pytest.raises(GatewayError) as info:
            await call
        assert info.value.status_code == 404


async def test_tenants_get_and_put(redis_prefix) -> None:
    svc = svc_of(redis_prefix)
    assert (await admin_tenants.get_tenant(svc, "acme"))["source"] == "default"
    put = await admin_tenants.put_tenant(svc, "acme", {"rpm": 30, "options": {"cache": {"max_temperature": 0.2}}})
    assert put["rpm"] == 30 and (await admin_tenants.get_tenant(svc, "acme"))["options"]["cache"] == {
        "max_temperature": 0.2}
    with pytest.raises(GatewayError) as info:
        await admin_tenants.put_tenant(svc, "acme", {"rpn": 3})
    assert info.value.status_code == 400


async def test_usage_admin_sees_all_and_a_key_only_its_own(redis_prefix) -> None:
    svc, pipe = gateway(redis_prefix)
    a = await admin_keys.create_key(svc, {"tenant": "acme", "models": ["*"], "budget_daily_usd": 1.0})
    b = await admin_keys.create_key(svc, {"tenant": "acme", "models": ["*"]})
    for _ in range(3):
        await run(pipe, request(a["key"]))
    await run(pipe, request(b["key"]))
    report = await usage.admin_usage(svc, {"tenant": "acme", "period": "day"})
    rows = {r["id"]: r for r in report["data"]}
    assert rows["acme"]["requests"] == 4 and rows[a["id"]]["requests"] == 3 and rows[b["id"]]["requests"] == 1
    assert rows[a["id"]]["budget_left_usd"] == pytest.approx(1.0 - rows[a["id"]]["spend_usd"])
    assert rows[a["id"]]["spend_usd"] > 0 and rows[b["id"]]["budget_usd"] is None
    assert (await usage.admin_usage(svc, {"period": "month"}))["data"][0]["requests"] == 4
    own = await usage.own_usage(svc, {"authorization": f"Bearer {b['key']}"}, {})
    assert {r["id"] for r in own["data"]} == {"acme", b["id"]}
    with pytest.raises(GatewayError) as info:
        await usage.own_usage(svc, {"authorization": f"Bearer {b['key']}"}, {"key": a["id"]})
    assert info.value.status_code == 403
    with pytest.raises(GatewayError):
        await usage.admin_usage(svc, {"period": "yesterday"})


async def test_models_list_shows_only_what_the_key_may_call() -> None:
    from app.api.model_list import list_models

    svc = PolicyService(PolicyConfig(), auth_enabled=True, environ={})
    names = ["auto", "small", "tiny-small", "large", "tiny-large"]
    _, scoped = await svc.create_key(KeyCreate(tenant="t", models=["tiny-*", "small"]), "admin")
    _, none = await svc.create_key(KeyCreate(tenant="t", models=[]), "admin")
    ids = lambda data: [m["id"] for m in data["data"]]  # noqa: E731
    assert ids(await list_models(svc, names, {"authorization": f"Bearer {scoped}"})) == [
        "small", "tiny-small", "tiny-large"]
    assert ids(await list_models(svc, names, {"authorization": f"Bearer {none}"})) == []
    off = PolicyService(PolicyConfig(), auth_enabled=False, environ={})
    assert ids(await list_models(off, names, {})) == names
    with pytest.raises(GatewayError):
        await list_models(svc, names, {})


async def test_admin_dispatch_needs_the_admin_key_and_never_logs_it(caplog, monkeypatch) -> None:
    import logging

    from app.api.policy_admin import dispatch
    from app.config import AuthConfig

    caplog.set_level(logging.DEBUG)
    svc = PolicyService(PolicyConfig(), auth_enabled=True, environ={})
    auth = AuthConfig(admin_key_env="LLMGW_TEST_ADMIN_KEY_X")
    admin = "sk-llmgw-admin-" + "Z" * 43
    with pytest.raises(GatewayError) as info:  # none configured: 403 even with a guess
        await dispatch(svc, auth, "GET", "/admin/keys", {"authorization": f"Bearer {admin}"}, {})
    assert info.value.status_code == 403
    monkeypatch.setenv("LLMGW_TEST_ADMIN_KEY_X", admin)
    bodies = []
    for token in ("wrong", admin[:-1], ""):
        with pytest.raises(GatewayError) as info:
            await dispatch(svc, auth, "POST", "/admin/keys", {"authorization": f"Bearer {token}"}, {},
                           {"tenant": "t", "models": ["*"]})
        assert info.value.status_code == 403
        bodies.append(str(info.value.to_dict()))
    made = await dispatch(svc, auth, "POST", "/admin/keys", {"authorization": f"Bearer {admin}"}, {},
                          {"tenant": "t", "models": ["*"]}, "10.0.0.7")
    assert (await svc.audit.recent())[0]["actor"] == "admin@10.0.0.7"
    with pytest.raises(GatewayError) as info:
        await dispatch(svc, auth, "PUT", "/admin/keys", {"authorization": f"Bearer {admin}"}, {})
    assert info.value.status_code == 405
    got = await dispatch(svc, auth, "GET", f"/admin/keys/{made['id']}", {"authorization": f"Bearer {admin}"}, {})
    assert "key" not in got
    text = caplog.text + "".join(bodies) + str(got) + str(await svc.audit.recent())
    assert admin not in text and admin[15:] not in text and made["key"] not in text
