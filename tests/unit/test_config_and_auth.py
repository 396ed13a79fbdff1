"""Config loading (inline, file, Serve YAML) and tenant resolution."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import AuthConfig, GatewayConfig, load_config
from app.errors import AuthenticationError
from app.policy.auth import is_admin, resolve_tenant

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


def test_tenant_with_auth_off_and_on(monkeypatch: pytest.MonkeyPatch) -> None:
    off = AuthConfig()
    assert resolve_tenant({}, off) == "default"
    assert resolve_tenant({"x-llmgw-tenant": "acme"}, off) == "acme"
    with pytest.raises(AuthenticationError):
        resolve_tenant({"x-llmgw-tenant": "../etc"}, off)
    monkeypatch.setenv("KEY_ACME", "sk-acme-123")
    on = AuthConfig(enabled=True, tenant_key_envs={"acme": "KEY_ACME", "ghost": "UNSET_ENV"})
    assert resolve_tenant({"authorization": "Bearer sk-acme-123"}, on) == "acme"
    with pytest.raises(AuthenticationError) as info:
        resolve_tenant({"authorization": "Bearer wrong"}, on)
    assert "wrong" not in info.value.message and info.value.status_code == 401
    with pytest.raises(AuthenticationError):
        resolve_tenant({}, on)


def test_admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = AuthConfig()
    assert is_admin({}, cfg)  # local, auth off, no admin key set
    monkeypatch.setenv("LLMGW_ADMIN_KEY", "adm")
    assert not is_admin({}, cfg)
    assert is_admin({"authorization": "Bearer adm"}, cfg)
