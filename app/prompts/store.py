"""Storage behind the registry: the same atomic operations in memory and in Redis.

Every mutation bumps one change counter (``generation``); replicas compare it with what they cached
(see ``app.prompts.registry``). Version payloads are JSON strings without their number (the number is
the key they are stored under); version numbers are never reused, even after a delete.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class PromptState:
    """What the hot path needs to resolve a reference, read in one snapshot with its generation."""

    generation: int
    exists: bool
    versions: list[int] = field(default_factory=list)  # existing versions, ascending
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def latest(self) -> int | None:
        return self.versions[-1] if self.versions else None


# Results of label operations
MISSING = -1  # the version (or label) does not exist
NOTHING_TO_ROLL_BACK = -2


class PromptStore(Protocol):
    async def generation(self) -> int: ...
    async def state(self, ns: str, name: str) -> PromptState: ...
    async def add_version(self, ns: str, name: str, payload: str) -> int: ...
    async def get_versions(self, ns: str, name: str, versions: list[int]) -> dict[int, str]: ...
    async def names(self, ns: str) -> list[str]: ...
    async def set_label(self, ns: str, name: str, label: str, version: int) -> int:
        """The previous target (0 if none), or MISSING when the version does not exist."""
    async def rollback(self, ns: str, name: str, label: str) -> int:
        """The label's new target, MISSING (no such label) or NOTHING_TO_ROLL_BACK."""
    async def delete_label(self, ns: str, name: str, label: str) -> bool: ...
    async def delete_version(self, ns: str, name: str, version: int) -> list[str] | None:
        """None if the version does not exist; the labels pointing at it (then nothing is deleted); [] if deleted."""
    async def log_event(self, ns: str, name: str, event: str) -> None: ...
    async def events(self, ns: str, name: str, limit: int = 50) -> list[str]: ...
    async def kv_incr(self, key: str, amount: float) -> float: ...
    async def kv_get(self, key: str) -> str | None: ...
    async def kv_set(self, key: str, value: str) -> None: ...
    async def kv_delete(self, key: str) -> None: ...
    async def hincr(self, key: str, amounts: dict[str, float]) -> None: ...
    async def hgetall(self, key: str) -> dict[str, str]: ...
    async def set_add(self, key: str, member: str) -> None: ...
    async def set_members(self, key: str) -> list[str]: ...
    async def bump(self) -> int: ...
    async def aclose(self) -> None: ...


class MemoryPromptStore:
    """One process's store (a single ingress replica, tests, the CLI without Redis)."""

    def __init__(self) -> None:
        self._gen = 0
        self._next: dict[tuple[str, str], int] = {}
        self._versions: dict[tuple[str, str], dict[int, str]] = {}
        self._labels: dict[tuple[str, str], dict[str, int]] = {}
        self._stacks: dict[tuple[str, str, str], list[int]] = {}
        self._events: dict[tuple[str, str], list[str]] = {}
        self._kv: dict[str, str] = {}
        self._hashes: dict[str, dict[str, float]] = {}
        self._sets: dict[str, set[str]] = {}
        self._lock = asyncio.Lock()

    async def generation(self) -> int:
        return self._gen

    async def bump(self) -> int:
        self._gen += 1
        return self._gen

    async def state(self, ns: str, name: str) -> PromptState:
        key = (ns, name)
        if key not in self._next:
            return PromptState(self._gen, False)
        return PromptState(self._gen, True, sorted(self._versions[key]), dict(self._labels[key]))

    async def add_version(self, ns: str, name: str, payload: str) -> int:
        key = (ns, name)
        version = self._next.get(key, 0) + 1
        self._next[key] = version
        self._versions.setdefault(key, {})[version] = payload
        self._labels.setdefault(key, {})
        await self.bump()
        return version

    async def get_versions(self, ns: str, name: str, versions: list[int]) -> dict[int, str]:
        stored = self._versions.get((ns, name), {})
        return {v: stored[v] for v in versions if v in stored}

    async def names(self, ns: str) -> list[str]:
        return sorted(n for (space, n) in self._next if space == ns)

    async def set_label(self, ns: str, name: str, label: str, version: int) -> int:
        key = (ns, name)
        if version not in self._versions.get(key, {}):
            return MISSING
        previous = self._labels[key].get(label, 0)
        self._labels[key][label] = version
        if previous != version:
            self._stacks.setdefault((ns, name, label), []).append(version)
        await self.bump()
        return previous

    async def rollback(self, ns: str, name: str, label: str) -> int:
        key = (ns, name)
        current = self._labels.get(key, {}).get(label)
        if current is None:
            return MISSING
        stack = self._stacks.setdefault((ns, name, label), [])
        if stack:
            stack.pop()
        while stack:
            top = stack[-1]
            if top != current and top in self._versions[key]:
                self._labels[key][label] = top
                await self.bump()
                return top
            stack.pop()
        stack.append(current)
        return NOTHING_TO_ROLL_BACK

    async def delete_label(self, ns: str, name: str, label: str) -> bool:
        existed = self._labels.get((ns, name), {}).pop(label, None) is not None
        self._stacks.pop((ns, name, label), None)
        if existed:
            await self.bump()
        return existed

    async def delete_version(self, ns: str, name: str, version: int) -> list[str] | None:
        key = (ns, name)
        if version not in self._versions.get(key, {}):
            return None
        pointing = sorted(lb for lb, v in self._labels[key].items() if v == version)
        if pointing:
            return pointing
        del self._versions[key][version]
        await self.bump()
        return []

    async def log_event(self, ns: str, name: str, event: str) -> None:
        events = self._events.setdefault((ns, name), [])
        events.append(event)
        del events[:-500]

    async def events(self, ns: str, name: str, limit: int = 50) -> list[str]:
        return self._events.get((ns, name), [])[-limit:]

    async def kv_incr(self, key: str, amount: float) -> float:
        value = float(self._kv.get(key, 0.0)) + amount
        self._kv[key] = repr(value)
        return value

    async def kv_get(self, key: str) -> str | None:
        return self._kv.get(key)

    async def kv_set(self, key: str, value: str) -> None:
        self._kv[key] = value

    async def kv_delete(self, key: str) -> None:
        self._kv.pop(key, None)
        self._hashes.pop(key, None)
        self._sets.pop(key, None)

    async def hincr(self, key: str, amounts: dict[str, float]) -> None:
        h = self._hashes.setdefault(key, {})
        for field_name, amount in amounts.items():
            h[field_name] = h.get(field_name, 0.0) + amount

    async def hgetall(self, key: str) -> dict[str, str]:
        return {k: repr(v) for k, v in self._hashes.get(key, {}).items()}

    async def set_add(self, key: str, member: str) -> None:
        self._sets.setdefault(key, set()).add(member)

    async def set_members(self, key: str) -> list[str]:
        return sorted(self._sets.get(key, set()))

    async def aclose(self) -> None:
        return None
