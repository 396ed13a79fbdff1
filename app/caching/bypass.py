"""When a request must not use the cache."""

from __future__ import annotations

from app.caching.settings import CacheConfig


def should_bypass(
    temperature: float | None,
    has_tools: bool,
    cache_field: bool | None,
    cache_control: str | None,
    cfg: CacheConfig,
) -> str | None:
    """The reason to bypass the cache, or None to use it."""
    if not cfg.enabled:
        return "disabled"
    if cache_field is False:
        return "request-cache-false"
    if cache_control and any(d.strip().lower() in ("no-cache", "no-store") for d in cache_control.split(",")):
        return "cache-control"
    if has_tools:
        return "tools"
    if temperature is not None and temperature > cfg.max_temperature:
        return "temperature"
    return None
