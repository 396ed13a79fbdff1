"""The prompt registry: named templates, immutable numbered versions, labels, per-tenant namespaces.

Lookups (:meth:`PromptRegistry.resolve`) try the tenant's own namespace first, then the shared global
one; the first namespace holding a prompt of that name decides (a missing version or label there is a
404, never a fallback to the other namespace or another label). Another tenant's prompts are invisible.

Each replica caches prompt states and versions; a state is used only while no newer change is known.
The change counter is re-read at most every ``refresh_s``, so a promote or rollback on any replica is
seen by every other one within ``refresh_s`` (+ one Redis round trip).
"""

from __future__ import annotations

import difflib
import json
import time
from typing import Any

from app.errors import ConflictError, NotFoundError
from app.prompts.models import GLOBAL, LATEST, PromptVersion, check_label, check_name, check_version, namespace
from app.prompts.settings import PromptsConfig
from app.prompts.store import MISSING, MemoryPromptStore, PromptState, PromptStore
from app.prompts.template import parse_template

_MAX_CACHED_VERSIONS = 4096


def build_store(redis_url: str | None, cfg: PromptsConfig) -> PromptStore:
    """Redis when a URL is configured, else in memory (only correct with one ingress replica)."""
    if redis_url:
        from app.prompts.redis_store import RedisPromptStore

        return RedisPromptStore.from_url(redis_url, cfg.key_prefix)
    return MemoryPromptStore()


class PromptRegistry:
    def __init__(self, store: PromptStore, cfg: PromptsConfig | None = None) -> None:
        self.store = store
        self.cfg = cfg or PromptsConfig()
        self._known_gen = -1
        self._checked_at = float("-inf")
        self._states: dict[tuple[str, str], PromptState] = {}
        self._versions: dict[tuple[str, str, int], PromptVersion] = {}

    # ---- reads -----------------------------------------------------------------------------------
    @property
    def known_generation(self) -> int:
        """The newest change counter this replica has seen (cache entries older than it are refetched)."""
        return self._known_gen

    async def refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.cfg.refresh_s:
            return
        self._checked_at = now  # set first: concurrent requests use the cache during the round trip
        self._known_gen = max(self._known_gen, await self.store.generation())

    async def _state(self, ns: str, name: str) -> PromptState:
        await self.refresh()
        st = self._states.get((ns, name))
        if st is None or st.generation < self._known_gen:
            st = await self.store.state(ns, name)
            self._known_gen = max(self._known_gen, st.generation)
            self._states[(ns, name)] = st
        return st

    async def find(self, tenant: str, name: str) -> tuple[str, PromptState]:
        """The namespace holding ``name`` for ``tenant`` (own first, then global) and its state."""
        check_name(name)
        for ns in dict.fromkeys((namespace(tenant), GLOBAL)):
            st = await self._state(ns, name)
            if st.exists:
                return ns, st
        raise NotFoundError(f"Prompt '{name}' not found.", param="prompt_ref.name", code="prompt_not_found")

    async def _version(self, ns: str, name: str, version: int) -> PromptVersion:
        key = (ns, name, version)
        cached = self._versions.get(key)
        if cached is not None:
            return cached
        payload = (await self.store.get_versions(ns, name, [version])).get(version)
        if payload is None:
            raise NotFoundError(f"Version {version} of prompt '{name}' not found.", param="prompt_ref.version",
                                code="prompt_version_not_found")
        pv = PromptVersion.from_dict({**json.loads(payload), "namespace": ns, "name": name, "version": version})
        if len(self._versions) >= _MAX_CACHED_VERSIONS:
            self._versions.clear()
        self._versions[key] = pv
        return pv

    async def resolve(self, tenant: str, name: str, version: int | None = None,
                      label: str | None = None) -> PromptVersion:
        """The version a reference names (``label`` defaults to ``cfg.default_label``); 404 if absent."""
        ns, st = await self.find(tenant, name)
        return await self.resolve_in(ns, name, st, version, label)

    async def resolve_in(self, ns: str, name: str, st: PromptState, version: int | None,
                          label: str | None) -> PromptVersion:
        if version is not None:
            if version not in st.versions:
                raise NotFoundError(f"Version {version} of prompt '{name}' not found.",
                                    param="prompt_ref.version", code="prompt_version_not_found")
            return await self._version(ns, name, version)
        label = label or self.cfg.default_label
        target = st.latest if label == LATEST else st.labels.get(label)
        if target is None:
            raise NotFoundError(f"Label '{label}' of prompt '{name}' not found (labels: "
                                f"{', '.join(sorted(st.labels)) or 'none'}).", param="prompt_ref.label",
                                code="prompt_label_not_found")
        return await self._version(ns, name, target)

    async def list_prompts(self, tenant: str | None) -> list[dict[str, Any]]:
        """Prompts visible to ``tenant`` (its own, then global ones it does not shadow); None -> global only."""
        out, seen = [], set()
        for ns in dict.fromkeys((namespace(tenant), GLOBAL)):
            for name in await self.store.names(ns):
                if name in seen:
                    continue
                seen.add(name)
                st = await self.store.state(ns, name)
                out.append({"name": name, "namespace": ns, "latest": st.latest, "labels": st.labels})
        return out

    async def describe(self, tenant: str | None, name: str) -> dict[str, Any]:
        ns, st = await self._find_exact(tenant, name)
        payloads = await self.store.get_versions(ns, name, st.versions)
        versions = [PromptVersion.from_dict({**json.loads(p), "namespace": ns, "name": name, "version": v}).summary()
                    for v, p in sorted(payloads.items())]
        events = [json.loads(e) for e in await self.store.events(ns, name)]
        return {"name": name, "namespace": ns, "latest": st.latest, "labels": st.labels, "versions": versions,
                "events": events}

    async def get_version(self, tenant: str | None, name: str, version: int | None = None,
                          label: str | None = None) -> PromptVersion:
        ns, st = await self._find_exact(tenant, name)
        return await self.resolve_in(ns, name, st, version, label)

    async def diff(self, tenant: str | None, name: str, a: int, b: int) -> str:
        """A unified diff of two versions' templates (as YAML-like JSON, one field per line)."""
        va, vb = await self.get_version(tenant, name, a), await self.get_version(tenant, name, b)

        def lines(pv: PromptVersion) -> list[str]:
            return json.dumps(pv.template.model_dump(exclude_none=True), indent=2, ensure_ascii=False).splitlines(True)

        return "".join(difflib.unified_diff(lines(va), lines(vb), f"{name}@{a}", f"{name}@{b}"))

    async def _find_exact(self, tenant: str | None, name: str) -> tuple[str, PromptState]:
        """Admin reads: the namespace given (tenant or global), no fallback."""
        check_name(name)
        ns = namespace(tenant)
        st = await self.store.state(ns, name)
        if not st.exists:
            where = "the global namespace" if ns == GLOBAL else f"tenant '{ns}'"
            raise NotFoundError(f"Prompt '{name}' not found in {where}.", param="name", code="prompt_not_found")
        return ns, st

    # ---- writes (admin) --------------------------------------------------------------------------
    async def create(self, tenant: str | None, name: str, template: Any, *, author: str = "", note: str = "",
                     labels: list[str] | None = None) -> PromptVersion:
        """A new immutable version (the prompt is created with version 1); optionally labelled."""
        check_name(name)
        for label in labels or []:
            check_label(label, settable=True)
        parsed = parse_template(template)
        ns = namespace(tenant)
        pv = PromptVersion(ns, name, 0, parsed, author=author, note=note)
        payload = {k: v for k, v in pv.to_dict().items() if k not in ("namespace", "name", "version")}
        pv.version = await self.store.add_version(ns, name, json.dumps(payload, ensure_ascii=False))
        await self._event(ns, name, "create", author, version=pv.version, note=note)
        for label in labels or []:
            await self.set_label(tenant, name, label, pv.version, by=author)
        self.invalidate()
        return pv

    async def set_label(self, tenant: str | None, name: str, label: str, version: Any, *, by: str = "") -> dict:
        check_label(label, settable=True)
        version = check_version(version)
        ns, _ = await self._find_exact(tenant, name)
        previous = await self.store.set_label(ns, name, label, version)
        if previous == MISSING:
            raise NotFoundError(f"Version {version} of prompt '{name}' not found.", param="version",
                                code="prompt_version_not_found")
        await self._event(ns, name, "label", by, label=label, version=version, previous=previous or None)
        self.invalidate()
        return {"name": name, "namespace": ns, "label": label, "version": version, "previous": previous or None}

    async def promote(self, tenant: str | None, name: str, version: Any, *, label: str | None = None,
                      by: str = "") -> dict:
        """Point ``label`` (default: the default label, ``production``) at ``version``."""
        return await self.set_label(tenant, name, label or self.cfg.default_label, version, by=by)

    async def rollback(self, tenant: str | None, name: str, *, label: str | None = None, by: str = "") -> dict:
        """Point ``label`` back at the version it pointed to before (skipping deleted ones); 409 if none."""
        label = check_label(label or self.cfg.default_label, settable=True)
        ns, st = await self._find_exact(tenant, name)
        result = await self.store.rollback(ns, name, label)
        if result == MISSING:
            raise NotFoundError(f"Label '{label}' of prompt '{name}' not found.", param="label",
                                code="prompt_label_not_found")
        if result < 0:
            raise ConflictError(f"Label '{label}' of prompt '{name}' has no earlier version to roll back to.",
                                param="label")
        await self._event(ns, name, "rollback", by, label=label, version=result, previous=st.labels.get(label))
        self.invalidate()
        return {"name": name, "namespace": ns, "label": label, "version": result, "previous": st.labels.get(label)}

    async def delete_label(self, tenant: str | None, name: str, label: str, *, by: str = "") -> dict:
        check_label(label, settable=True)
        ns, _ = await self._find_exact(tenant, name)
        if not await self.store.delete_label(ns, name, label):
            raise NotFoundError(f"Label '{label}' of prompt '{name}' not found.", param="label",
                                code="prompt_label_not_found")
        await self._event(ns, name, "delete_label", by, label=label)
        self.invalidate()
        return {"name": name, "namespace": ns, "label": label, "deleted": True}

    async def delete_version(self, tenant: str | None, name: str, version: Any, *, by: str = "") -> dict:
        """Delete a version; 409 while a label points at it."""
        version = check_version(version)
        ns, _ = await self._find_exact(tenant, name)
        result = await self.store.delete_version(ns, name, version)
        if result is None:
            raise NotFoundError(f"Version {version} of prompt '{name}' not found.", param="version",
                                code="prompt_version_not_found")
        if result:
            raise ConflictError(f"Version {version} of prompt '{name}' is labelled {', '.join(result)}: move or "
                                "delete the label(s) first.", param="version", code="version_labelled")
        await self._event(ns, name, "delete_version", by, version=version)
        self.invalidate()
        return {"name": name, "namespace": ns, "version": version, "deleted": True}

    async def _event(self, ns: str, name: str, kind: str, by: str, **data: Any) -> None:
        event = {"event": kind, "at": time.time(), "by": by, **data}
        await self.store.log_event(ns, name, json.dumps(event, ensure_ascii=False))

    def invalidate(self) -> None:
        """This replica sees its own change at once (others within refresh_s)."""
        self._checked_at = float("-inf")
        self._states.clear()
