"""Environment overrides (LLMGW_<SECTION>__<FIELD>, LLMGW_AUTH) and the policy config checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import GatewayConfig, load_config
from app.config_env import apply_env_overrides

POOLS = [{"name": "small", "engine": {"model": "m"}}, {"name": "large", "engine": {"model": "m2"}}]


def test_section_fields_and_nested_fields_from_the_environment() -> None:
    env = {"LLMGW_POLICY__TIMEZONE": "Europe/Paris", "LLMGW_POLICY__FAIL_MODE__REQUESTS": "closed",
           "LLMGW_POLICY__FREE_MODELS": '["tiny-small"]', "LLMGW_INGRESS__DEFAULT_MAX_TOKENS": "64",
           "LLMGW_REDIS__URL": "redis://r:6379/0", "UNRELATED": "x", "LLMGW_ADMIN_KEY": "never-in-config"}
    data = apply_env_overrides({"pools": POOLS, "policy": {"timezone": "UTC", "rpm_note": 1}}, env)
    assert data["policy"] == {"timezone": "Europe/Paris", "rpm_note": 1, "fail_mode": {"requests": "closed"},
                              "free_models": ["tiny-small"]}
    assert data["redis"] == {"url": "redis://r:6379/0"} and "never-in-config" not in str(data)
    data["policy"].pop("rpm_note")
    cfg = GatewayConfig.model_validate(data)
    assert cfg.ingress.default_max_tokens == 64 and cfg.policy.fail_mode.requests == "closed"


@pytest.mark.parametrize("value,enabled", [("required", True), ("off", False), ("REQUIRED", True)])
def test_llmgw_auth_shortcut(value: str, enabled: bool) -> None:
    data = apply_env_overrides({"pools": POOLS, "auth": {"enabled": not enabled}}, {"LLMGW_AUTH": value})
    assert GatewayConfig.model_validate(data).auth.enabled is enabled


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="LLMGW_AUTH"):
        apply_env_overrides({}, {"LLMGW_AUTH": "maybe"})
    with pytest.raises(ValueError, match="pools"):
        apply_env_overrides({}, {"LLMGW_POOLS__0": "x"})
    with pytest.raises(ValidationError):  # a typo in a field name is refused by the strict config
        GatewayConfig.model_validate(apply_env_overrides({"pools": POOLS}, {"LLMGW_POLICY__TIMEZON": "UTC"}))
    with pytest.raises(ValidationError, match="unknown timezone"):
        GatewayConfig.model_validate(apply_env_overrides({"pools": POOLS}, {"LLMGW_POLICY__TIMEZONE": "Mars/X"}))


def test_load_config_applies_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMGW_AUTH", "required")
    monkeypatch.setenv("LLMGW_POLICY__TIMEZONE", "America/New_York")
    cfg = load_config({"pools": POOLS})
    assert cfg.auth.enabled and cfg.policy.timezone == "America/New_York"


def test_several_ingress_replicas_need_redis() -> None:
    with pytest.raises(ValidationError, match=r"needs redis\.url"):
        GatewayConfig.model_validate({"pools": POOLS, "ingress": {"num_replicas": 2}})
    GatewayConfig.model_validate({"pools": POOLS, "ingress": {"num_replicas": 2}, "redis": {"url": "redis://r"}})
