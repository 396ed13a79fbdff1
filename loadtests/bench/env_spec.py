"""``NAME+KEY=VALUE+KEY2=VALUE2`` specs: a bench target (or tree) with environment variables of its own."""

from __future__ import annotations

from collections.abc import Iterable


def env_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``; a pair without ``=`` or a name is an error."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def split_env(spec: str) -> tuple[str, dict[str, str]]:
    """``gateway+A=1+B=2`` -> ``("gateway", {"A": "1", "B": "2"})``."""
    head, *pairs = spec.split("+")
    return head, env_pairs(pairs)
