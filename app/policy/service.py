"""PolicyService: the one object the policy stages and admin handlers talk to.

It holds the stores (Redis when ``redis.url`` is set, else memory), authenticates requests,
resolves tenants, and runs the admin operations on keys and tenants (each one audited).
Limits and budgets: :class:`app.policy.enforce.Enforcer` (``service.enforcer``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import AuthenticationError, InvalidRequestError, NotFoundError
from app.policy.admin_models import KeyCreate, KeyUpdate
from app.policy.audit import AuditLog, MemoryAuditLog, RedisAuditLog, audit_entry
from app.policy.key_store import KeyStore, MemoryKeyStore, ReplayVault
from app.policy.keys import KeyHasher, KeyRecord, looks_like_key, new_key, new_key_id
from app.policy.settings import PolicyConfig
from app.policy.store_guard import StoreUnavailable, guarded, unavailable
from app.policy.tenants import TENANT_RE, MemoryTenantStore, RedisTenantStore, TenantRecord, TenantStore

logger = logging.getLogger("llmgw.policy")


@dataclass(slots=True)
class Identity:
    tenant: str
    key: KeyRecord | None
    tenant_record: TenantRecord

    @property
    def models(self) -> tuple[str, ...] | None:
        return None if self.key is None else tuple(self.key.models)


class _TTLCache:
    """A tiny TTL map (``ttl_s`` <= 0.5 s): every replica sees a store change within one TTL."""

    def __init__(self, ttl_s: float, clock: Callable[[], float], max_items: int = 10_000) -> None:
        self.ttl_s, self._clock, self.max_items = ttl_s, clock, max_items
        self._items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> tuple[bool, Any]:
        hit = self._items.get(key)
        if hit is None or self._clock() - hit[0] >= self.ttl_s:
            return False, None
        return True, hit[1]

    def put(self, key: str, value: Any) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._items) >= self.max_items:
            self._items.clear()
        self._items[key] = (self._clock(), value)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or ""
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return headers.get("x-api-key") or None


class PolicyService:
    def __init__(self, policy: PolicyConfig, *, auth_enabled: bool, tenant_header: str = "x-llmgw-tenant",
                 redis=None, clock: Callable[[], float] = time.time,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.cfg = policy
        self.auth_enabled = auth_enabled
        self.tenant_header = tenant_header
        self.redis = redis
        self.clock = clock
        secret = environ.get(policy.key_secret_env) or None
        self.hasher = KeyHasher(secret)
        self.vault = ReplayVault(secret)
        p = policy.key_prefix
        if redis is not None:
            from app.policy.redis_key_store import RedisKeyStore

            self.keys: KeyStore = RedisKeyStore(redis, p)
            self.tenants: TenantStore = RedisTenantStore(redis, p)
            self.audit: AuditLog = RedisAuditLog(redis, p, policy.audit_max_len)
        else:
            self.keys, self.tenants, self.audit = MemoryKeyStore(clock), MemoryTenantStore(), MemoryAuditLog()
        self._key_cache = _TTLCache(policy.key_cache_ttl_s, time.monotonic)
        self._tenant_cache = _TTLCache(policy.key_cache_ttl_s, time.monotonic)
        self._inflight: dict[str, asyncio.Future] = {}
        from app.policy.enforce import Enforcer  # after the stores: it reads them

        self.enforcer = Enforcer(self)

    @property
    def store_kind(self) -> str:
        return "redis" if self.redis is not None else "memory"

    def describe(self) -> str:
        """The start-up line: where keys live and how they are hashed."""
        hashing = ("HMAC-SHA256 with $" + self.cfg.key_secret_env) if self.hasher.keyed else (
            f"plain SHA-256 (set ${self.cfg.key_secret_env} for HMAC)")
        where = "Redis" if self.redis is not None else "process memory (single ingress replica; lost at restart)"
        return f"policy: keys, limits and spend in {where}; key hashes {hashing}; auth " + (
            "required" if self.auth_enabled else "off (tenant from the " + self.tenant_header + " header)")

    async def _io(self, call):
        return await guarded(call)  # deadline: the client's socket timeouts (policy.redis_timeout_s)

    # ---- who is asking -----------------------------------------------------------------------
    async def authenticate(self, headers: Mapping[str, str]) -> Identity:
        """Auth required: the key decides. Auth off: a known gateway key still applies (its tenant, scope and
        limits; revoked or expired: 401); anything else (``api_key="local"``, an unknown key, the admin key)
        -> the tenant header."""
        token = bearer_token(headers)
        if not self.auth_enabled:
            if token and looks_like_key(token):
                try:
                    record = await self._find_key(self.hasher(token))
                except StoreUnavailable:
                    record = None  # auth off: the store being away never refuses a request
                if record is not None:
                    return await self._identity(record, self.hasher(token))
            tenant = headers.get(self.tenant_header) or "default"
            if not TENANT_RE.match(tenant):
                raise AuthenticationError("Invalid tenant name.", code="invalid_tenant")
            return Identity(tenant, None, await self.tenant(tenant))
        if not token:
            raise AuthenticationError("Missing API key. Pass it as 'Authorization: Bearer <key>'.")
        if not looks_like_key(token):
            raise AuthenticationError("Incorrect API key provided.")
        key_hash = self.hasher(token)
        try:
            record = await self._find_key(key_hash)
        except StoreUnavailable:
            raise unavailable("API key") from None
        if record is None:
            raise AuthenticationError("Incorrect API key provided.")
        return await self._identity(record, key_hash)

    async def _identity(self, record: KeyRecord, key_hash: str) -> Identity:
        now = self.clock()
        if not record.accepts(key_hash, now):
            status = record.status(now)
            reason = {"revoked": "has been revoked", "expired": "has expired"}.get(status, "is no longer valid")
            raise AuthenticationError(f"This API key {reason}.")
        return Identity(record.tenant, record, await self.tenant(record.tenant))

    async def _find_key(self, key_hash: str) -> KeyRecord | None:
        """Cached for ``key_cache_ttl_s``; concurrent misses of one key share a single store read."""
        hit, record = self._key_cache.get(key_hash)
        if hit:
            return record
        pending = self._inflight.get(key_hash)
        if pending is None:
            pending = asyncio.ensure_future(self._io(self.keys.find(key_hash)))
            self._inflight[key_hash] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key_hash, None))
        record = await asyncio.shield(pending)
        self._key_cache.put(key_hash, record)
        return record

    async def tenant(self, tenant_id: str) -> TenantRecord:
        hit, record = self._tenant_cache.get(tenant_id)
        if hit:
            return record
        try:
            record = await self._io(self.tenants.get(tenant_id))
        except StoreUnavailable:
            record = None  # limits of the YAML defaults apply while the store is away
        if record is None:
            if tenant_id in self.cfg.tenants:
                record = TenantRecord.from_defaults(tenant_id, self.cfg.tenants[tenant_id], "yaml")
            else:
                record = TenantRecord.from_defaults(tenant_id, self.cfg.default_tenant, "default")
        self._tenant_cache.put(tenant_id, record)
        return record

    # ---- admin: keys -----------------------------------------------------------------------
    async def _audited(self, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
        await self._io(self.audit.record(audit_entry(actor, action, target, details, self.clock())))

    async def create_key(self, spec: KeyCreate, actor: str) -> tuple[KeyRecord, str]:
        secret = new_key()
        record = KeyRecord(id=new_key_id(), tenant=spec.tenant, key_hash=self.hasher(secret), name=spec.name,
                           models=list(spec.models), rpm=spec.rpm, tpm=spec.tpm,
                           budget_daily_usd=spec.budget_daily_usd, budget_monthly_usd=spec.budget_monthly_usd,
                           expires_at=spec.expires_at, created_at=self.clock())
        await self._io(self.keys.create(record))
        await self._audited(actor, "key.create", record.id, {"tenant": record.tenant, **spec.model_dump(
            exclude={"tenant", "expires_in_s"})})
        return record, secret

    async def get_key(self, key_id: str) -> KeyRecord:
        record = await self._io(self.keys.get(key_id))
        if record is None:
            raise NotFoundError(f"No API key with id '{key_id}'.", param="id", code="key_not_found")
        return record

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        return await self._io(self.keys.list(tenant))

    async def update_key(self, key_id: str, patch: KeyUpdate, actor: str) -> KeyRecord:
        changes = patch.model_dump(exclude_unset=True)
        if not changes:
            raise InvalidRequestError("Nothing to update.", param="body")

        def apply(r: KeyRecord) -> KeyRecord:
            for name, value in changes.items():
                setattr(r, name, value)
            return r

        record = await self._io(self.keys.update(key_id, apply))
        if record is None:
            raise NotFoundError(f"No API key with id '{key_id}'.", param="id", code="key_not_found")
        await self._audited(actor, "key.update", key_id, changes)
        return record

    async def revoke_key(self, key_id: str, actor: str) -> KeyRecord:
        now = self.clock()

        def revoke(r: KeyRecord) -> KeyRecord | None:
            if r.revoked_at is not None:
                return None  # already revoked: keep the first time
            r.revoked_at = now
            return r

        record = await self._io(self.keys.update(key_id, revoke))
        if record is None:
            raise NotFoundError(f"No API key with id '{key_id}'.", param="id", code="key_not_found")
        await self._audited(actor, "key.revoke", key_id, {"revoked_at": record.revoked_at})
        return record

    async def rotate_key(self, key_id: str, actor: str, overlap_s: float | None = None,
                         idempotency_key: str | None = None) -> tuple[KeyRecord, str, bool]:
        """(record, new key, replayed). The old key works until ``now + overlap`` and not a moment longer."""
        overlap = self.cfg.rotate_overlap_s if overlap_s is None else overlap_s
        address = self.vault.address(key_id, idempotency_key) if idempotency_key else None
        if address is not None:
            replay = await self._replay(key_id, idempotency_key, address)
            if replay is not None:
                return await self.get_key(key_id), replay, True
        secret, now = new_key(), self.clock()

        def rotate(r: KeyRecord) -> KeyRecord | None:
            if r.status(now) != "active":
                return None
            r.previous_hash, r.previous_valid_until = r.key_hash, now + overlap
            r.key_hash, r.rotated_at = self.hasher(secret), now
            return r

        record = await self._io(self.keys.update(key_id, rotate))
        if record is None or record.rotated_at != now:
            if address is not None:
                await self._io(self.keys.put_replay(address, b"", 0.001))  # release the claim
            if record is None:
                raise NotFoundError(f"No API key with id '{key_id}'.", param="id", code="key_not_found")
            raise InvalidRequestError(f"API key '{key_id}' is {record.status(now)}: it cannot be rotated.",
                                      param="id", code="key_not_active")
        if address is not None:
            blob = self.vault.seal(key_id, idempotency_key, secret)
            await self._io(self.keys.put_replay(address, blob, self.cfg.idempotency_ttl_s))
        await self._audited(actor, "key.rotate", key_id, {"overlap_s": overlap,
                                                          "previous_valid_until": record.previous_valid_until,
                                                          "idempotency_key_used": address is not None})
        return record, secret, False

    async def _replay(self, key_id: str, idempotency_key: str, address: str) -> str | None:
        """The new key of an earlier rotate with this Idempotency-Key, or None after claiming it for us."""
        for _ in range(50):  # a concurrent first call holds the claim for at most ~5 s
            if await self._io(self.keys.claim_replay(address, 10.0)):
                return None
            blob = await self._io(self.keys.get_replay(address))
            if blob:
                return self.vault.open(key_id, idempotency_key, blob)
            await asyncio.sleep(0.1)
        raise InvalidRequestError("A rotate with this Idempotency-Key is still in progress.", code="conflict")

    # ---- admin: tenants --------------------------------------------------------------------
    async def put_tenant(self, tenant_id: str, fields: dict[str, Any], actor: str) -> TenantRecord:
        from app.policy.settings import TenantDefaults

        if not TENANT_RE.match(tenant_id):
            raise InvalidRequestError("tenant must match [A-Za-z0-9_.-]{1,64}", param="id")
        record = TenantRecord.from_defaults(tenant_id, TenantDefaults.model_validate(fields), "store")
        await self._io(self.tenants.put(record))
        self._tenant_cache.drop(tenant_id)
        await self._audited(actor, "tenant.put", tenant_id, record.to_dict())
        return record


def admin_key_matches(token: str | None, admin_key: str | None) -> bool:
    """Constant-time comparison; no admin key configured means no admin access at all."""
    if not admin_key or not token:
        return False
    return hmac.compare_digest(token.encode(), admin_key.encode())
