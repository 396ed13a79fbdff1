"""Environment overrides of the gateway config (pydantic-settings), applied by ``load_config``.

* ``LLMGW_<SECTION>__<FIELD>[__<SUBFIELD>...]=value`` sets that field, e.g.
  ``LLMGW_REDIS__URL=redis://...``, ``LLMGW_POLICY__TIMEZONE=Europe/Paris``,
  ``LLMGW_POLICY__FAIL_MODE__REQUESTS=closed``, ``LLMGW_INGRESS__NUM_REPLICAS=2``.
  Values that look like JSON lists/objects (``'["a","b"]'``) are decoded; scalars are validated
  (and coerced) by ``GatewayConfig`` like YAML values.
* Shortcuts: ``LLMGW_AUTH=off|required`` (``auth.enabled``); ``LLMGW_ADMIN_KEY`` is the admin key
  itself — read where the admin check happens (``auth.admin_key_env``), never copied into config.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import Any

from pydantic import create_model
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

AUTH_ENV = "LLMGW_AUTH"
ADMIN_KEY_ENV = "LLMGW_ADMIN_KEY"
_AUTH_VALUES = {"off": False, "required": True}


class _Env(EnvSettingsSource):
    """``environ`` minus the two shortcuts (they are not ``<SECTION>__<FIELD>`` values)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        skip = {AUTH_ENV.lower(), ADMIN_KEY_ENV.lower()}
        self._environ = {k.lower(): v for k, v in environ.items() if k.lower() not in skip}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._environ


class _Sections(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMGW_", env_nested_delimiter="__", extra="ignore")


@functools.cache
def _sections_model(names: tuple[str, ...]) -> type[BaseSettings]:
    """A settings model with one ``dict`` field per GatewayConfig section (so every section can be set)."""
    return create_model("GatewaySections", __base__=_Sections, **{n: (dict[str, Any] | None, None) for n in names})


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``data`` (a GatewayConfig dict) with the ``LLMGW_*`` environment applied on top."""
    from app.config import GatewayConfig  # the sections are GatewayConfig's fields (imported late: no cycle)

    env = os.environ if environ is None else environ
    model = _sections_model(tuple(GatewayConfig.model_fields))
    sections = {k: v for k, v in _Env(model, env)().items() if v is not None}
    if "pools" in sections:
        raise ValueError("pools cannot be set from the environment (LLMGW_POOLS__*): edit the config file")
    out = _merge(data, _decode(sections))
    if (auth := env.get(AUTH_ENV)) is not None:
        if auth.lower() not in _AUTH_VALUES:
            raise ValueError(f"{AUTH_ENV} must be 'off' or 'required', not {auth!r}")
        out = _merge(out, {"auth": {"enabled": _AUTH_VALUES[auth.lower()]}})
    return out
