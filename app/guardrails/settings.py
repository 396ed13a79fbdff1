"""Guardrail configuration: ``GatewayConfig.guardrails``, with per-tenant partial overrides.

The defaults are the local ones (``make run``): injection detection flags, PII and secrets are redacted.
A production config sets ``input.injection.action: block`` (docs/guardrails.md).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from app.guardrails.entities import ENTITIES, PII_ENTITIES, SECRET_ENTITIES

InputAction = Literal["block", "flag", "allow"]
OutputAction = Literal["redact", "block", "allow"]
FailMode = Literal["closed", "open"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InjectionConfig(_Strict):
    """Prompt-injection / jailbreak detection: the trained classifier plus classic patterns."""

    enabled: bool = True
    action: InputAction = "flag"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)  # None -> the artifact's (chosen on validation)
    patterns: bool = True  # the regex rule (app/guardrails/patterns.py), same action
    artifact: str | None = None  # None -> app/guardrails/artifacts/injection-v1.npz
    # the n-gram pre-screen clears plainly benign text without the MiniLM pass (docs/guardrails.md); it is
    # used only at the artifact's threshold or above (a lower tenant threshold always embeds)
    prescreen: bool = True
    roles: list[str] = Field(default_factory=lambda: ["user", "tool"])  # message roles scanned
    scan_last_messages: int = Field(default=8, ge=1)  # the most recent messages of those roles
    timeout_s: float = Field(default=1.0, gt=0)
    fail_mode: FailMode = "closed"  # classifier error/timeout: closed -> 503 guardrail_unavailable


class DenylistRule(_Strict):
    """A banned topic: whole-word, case-insensitive terms or phrases."""

    name: str = Field(pattern=r"^[a-z0-9_.-]{1,40}$")  # the reason code is "banned_topic:<name>"
    terms: list[str] = Field(min_length=1)
    action: InputAction = "block"


class InputGuardConfig(_Strict):
    enabled: bool = True
    max_prompt_tokens: int | None = Field(default=None, ge=1)  # in the target model's tokens
    max_messages: int | None = Field(default=None, ge=1)
    injection: InjectionConfig = Field(default_factory=InjectionConfig)
    denylist: list[DenylistRule] = Field(default_factory=list)


class EntityGroupConfig(_Strict):
    enabled: bool = True
    entities: list[str]
    action: OutputAction = "redact"
    ignore: dict[str, list[str]] = Field(default_factory=dict)  # entity -> values never masked

    @model_validator(mode="after")
    def _known(self) -> EntityGroupConfig:
        unknown = (set(self.entities) | set(self.ignore)) - set(ENTITIES)
        if unknown:
            raise ValueError(f"unknown entities {sorted(unknown)}; known: {sorted(ENTITIES)}")
        return self


class PIIConfig(EntityGroupConfig):
    entities: list[str] = Field(default_factory=lambda: list(PII_ENTITIES))


class SecretsConfig(EntityGroupConfig):
    entities: list[str] = Field(default_factory=lambda: list(SECRET_ENTITIES))


class OutputGuardConfig(_Strict):
    enabled: bool = True
    pii: PIIConfig = Field(default_factory=PIIConfig)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    logging_only: bool = False  # findings are logged and masked in the logs; the answer is never changed
    fail_mode: FailMode = "closed"  # scanner error: closed -> 503 guardrail_unavailable (streams: error event)


class GuardrailsConfig(_Strict):
    enabled: bool = True
    input: InputGuardConfig = Field(default_factory=InputGuardConfig)
    output: OutputGuardConfig = Field(default_factory=OutputGuardConfig)
    tenants: dict[str, dict[str, Any]] = Field(default_factory=dict)  # tenant -> partial override of this config
    _resolved: dict[str, GuardrailsConfig] = PrivateAttr(default_factory=dict)

    @field_validator("tenants")
    @classmethod
    def _valid_overrides(cls, tenants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, override in tenants.items():
            if "tenants" in override:
                raise ValueError(f"tenant {name!r}: an override cannot hold tenants")
        return tenants

    @model_validator(mode="after")
    def _check_tenant_overrides(self) -> GuardrailsConfig:
        for name, override in self.tenants.items():
            try:
                for_tenant(self, override)
            except ValueError as exc:
                raise ValueError(f"guardrails.tenants.{name}: {exc}") from exc
        return self

    def resolve_key(self, tenant: str | None, override: dict[str, Any] | None = None) -> str:
        """Equal keys resolve to equal configs (tenants without an entry share the base)."""
        return json.dumps([tenant if tenant in self.tenants else None, override or {}], sort_keys=True, default=str)

    def resolve(self, tenant: str | None, override: dict[str, Any] | None = None) -> GuardrailsConfig:
        """The config for ``tenant``: base <- ``tenants[tenant]`` <- ``override`` (the tenant record's)."""
        key = self.resolve_key(tenant, override)
        cached = self._resolved.get(key)
        if cached is None:
            cached = self
            if tenant is not None and tenant in self.tenants:
                cached = for_tenant(cached, self.tenants[tenant])
            if override:
                cached = for_tenant(cached, override)
            if len(self._resolved) < 4096:  # tenants x distinct overrides; beyond that resolve each time
                self._resolved[key] = cached
        return cached


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of dicts; lists and scalars in ``override`` replace the base value."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "ignore":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def for_tenant(base: GuardrailsConfig, override: dict[str, Any] | None) -> GuardrailsConfig:
    """``base`` with a partial override dict merged in (validated; unknown keys are an error).

    Dicts merge key by key, lists replace (a tenant's ``denylist`` is its whole list; an ``ignore`` map
    replaces the base map). The result carries no ``tenants``.
    """
    data = base.model_dump(exclude={"tenants"})
    return GuardrailsConfig.model_validate(_merge(data, dict(override or {})))
