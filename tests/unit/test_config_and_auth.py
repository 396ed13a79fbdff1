"""Config loading (inline, file, Serve YAML) and tenant resolution."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import AuthConfig, GatewayConfig, load_config
from app.errors import PermissionDeniedError
from app.policy.auth import ensure_local_admin_key, guard_metrics, readyz_view, require_admin

ROOT = Path(__file__).resolve().parents[2]
POOL = {"name": "small", "engine": {"model": "m"}}


def test_serve_configs_load_and_differ_only_in_values() -> None:
    cpu = load_config(ROOT / "serve_config.cpu.yaml", base_dir=ROOT)
    gpu = load_config(ROOT / "serve_config.yaml", base_dir=ROOT)
    assert [p.name for p in cpu.pools] == [p.name for p in gpu.pools] == ["small", "large"]
    assert gpu.pool("large").engine.quantization == "compressed-tensors"  # what `llmgw quantize` writes
    assert gpu.pool("large").ray_actor_options["resources"] == {"pool_large": 1}
    assert set(cpu.model_dump()) == set(gpu.model_dump())


def test_model_names_include_auto_pools_and_aliases() -> None:
    one_pool_router = {"small_pool": "small", "large_pool": "small"}
    cfg = GatewayConfig.model_validate({"pools": [{**POOL, "aliases": ["s1"]}], "router": one_pool_router})
    assert cfg.model_names() == {"auto": "", "small": "small", "m": "small", "s1": "small"}


def test_config_rejects_typos_and_bad_default_pool() -> None:
    with pytest.raises(ValidationError):
        GatewayConfig.model_validate({"pools": [POOL], "routr": {}})
    with pytest.raises(ValidationError):
        GatewayConfig.model_validate({"pools": [POOL], "router": {"default_pool": "nope"}})
    with pytest.raises(ValidationError):
        GatewayConfig.model_validate({"pools": [POOL, POOL]})


def test_tenant_key_envs_is_refused_with_where_keys_live_now() -> None:
    with pytest.raises(ValidationError, match="llmgw keys create"):
        GatewayConfig.model_validate({"pools": [POOL], "auth": {"enabled": True,
                                                                "tenant_key_envs": {"acme": "LLMGW_KEY_ACME"}}})
    assert "tenant_key_envs" not in AuthConfig.model_fields


LARGE = {"name": "large", "engine": {"model": "m2"}}


@pytest.mark.parametrize("field", ["small_pool", "large_pool", "default_pool"])
def test_router_pools_must_exist_when_router_is_on(field: str) -> None:
    """A classifier target that names no pool would be a 500 at request time: reject it at load."""
    GatewayConfig.model_validate({"pools": [POOL, LARGE]})  # the defaults name existing pools
    with pytest.raises(ValidationError, match=rf"router\.{field} .nope. is not a pool"):
        GatewayConfig.model_validate({"pools": [POOL, LARGE], "router": {field: "nope"}})
    with pytest.raises(ValidationError, match=r"router\.large_pool .large."):
        GatewayConfig.model_validate({"pools": [POOL]})  # router on by default, no large pool
    # with the router off only explicit model names are served: nothing to check
    GatewayConfig.model_validate({"pools": [POOL], "router": {"enabled": False, field: "nope"}})


def test_admin_key_is_required_and_compared_in_constant_time() -> None:
    cfg = AuthConfig()
    with pytest.raises(PermissionDeniedError) as info:  # no admin key configured: admin endpoints are closed
        require_admin({}, cfg, environ={})
    assert info.value.status_code == 403 and info.value.code == "admin_key_not_configured"
    env = {"LLMGW_ADMIN_KEY": "adm"}
    require_admin({"authorization": "Bearer adm"}, cfg, env)
    require_admin({"x-api-key": "adm"}, cfg, env)
    for headers in ({}, {"authorization": "Bearer adx"}, {"authorization": "Bearer adm2"}):
        with pytest.raises(PermissionDeniedError):
            require_admin(headers, cfg, env)
    with pytest.raises(PermissionDeniedError, match="need the admin key") as info:
        require_admin({"authorization": "Bearer nope"}, cfg, env)
    assert "nope" not in info.value.message


def test_local_admin_key_file(tmp_path: Path) -> None:
    key, created = ensure_local_admin_key(tmp_path / ".cache" / "admin_key")
    assert created and key.startswith("sk-llmgw-admin-") and len(key) > 40
    assert (tmp_path / ".cache" / "admin_key").stat().st_mode & 0o777 == 0o600
    assert ensure_local_admin_key(tmp_path / ".cache" / "admin_key") == (key, False)


def test_metrics_and_readyz_detail_behind_the_admin_key() -> None:
    cfg, env = AuthConfig(), {"LLMGW_ADMIN_KEY": "adm"}
    guard_metrics({}, cfg, protect=False, environ=env)
    with pytest.raises(PermissionDeniedError):
        guard_metrics({}, cfg, protect=True, environ=env)
    guard_metrics({"authorization": "Bearer adm"}, cfg, protect=True, environ=env)
    body = {"status": "ready", "pools": {"small": "ok"}, "breakers": {"pool:small": "closed"}}
    assert readyz_view(body, {}, cfg, protect=True, environ=env) == {"status": "ready"}
    assert readyz_view(body, {"authorization": "Bearer adm"}, cfg, protect=True, environ=env) == body
    assert readyz_view(body, {}, cfg, protect=False, environ=env) == body
