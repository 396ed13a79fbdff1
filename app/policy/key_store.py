"""Key storage: the ``KeyStore`` protocol, its in-memory implementation, and the replay vault for rotate.

Redis implementation: app/policy/redis_key_store.py. The store keeps records by id and an index
hash -> id (the previous hash after a rotate stays indexed until its overlap ends).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.policy.keys import KeyRecord

Mutation = Callable[[KeyRecord], KeyRecord | None]


class KeyStore(Protocol):
    """Where key records live. ``update`` is an atomic read-modify-write (``fn`` returns None: no change)."""

    async def create(self, record: KeyRecord) -> None: ...
    async def get(self, key_id: str) -> KeyRecord | None: ...
    async def find(self, key_hash: str) -> KeyRecord | None: ...
    async def list(self, tenant: str | None = None) -> list[KeyRecord]: ...
    async def update(self, key_id: str, fn: Mutation) -> KeyRecord | None: ...
    async def claim_replay(self, address: str, ttl_s: float) -> bool: ...
    async def put_replay(self, address: str, blob: bytes, ttl_s: float) -> None: ...
    async def get_replay(self, address: str) -> bytes | None: ...


class MemoryKeyStore:
    """Process-local store: a single ingress replica (``make run``); gone at restart."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._records: dict[str, KeyRecord] = {}
        self._index: dict[str, str] = {}
        self._replays: dict[str, tuple[bytes | None, float]] = {}
        self._clock = clock

    async def create(self, record: KeyRecord) -> None:
        self._records[record.id] = KeyRecord.from_dict(record.to_dict())
        self._index[record.key_hash] = record.id

    async def get(self, key_id: str) -> KeyRecord | None:
        record = self._records.get(key_id)
        return KeyRecord.from_dict(record.to_dict()) if record else None

    async def find(self, key_hash: str) -> KeyRecord | None:
        key_id = self._index.get(key_hash)
        return await self.get(key_id) if key_id else None

    async def list(self, tenant: str | None = None) -> list[KeyRecord]:
        return [await self.get(r.id) for r in self._records.values() if tenant is None or r.tenant == tenant]

    async def update(self, key_id: str, fn: Mutation) -> KeyRecord | None:
        current = await self.get(key_id)
        if current is None:
            return None
        new = fn(KeyRecord.from_dict(current.to_dict()))
        if new is None:
            return current
        for old in {current.key_hash, current.previous_hash} - {new.key_hash, new.previous_hash, None}:
            self._index.pop(old, None)
        self._index[new.key_hash] = key_id
        if new.previous_hash:
            self._index[new.previous_hash] = key_id
        self._records[key_id] = new
        return await self.get(key_id)

    def _live(self, address: str) -> tuple[bytes | None, float] | None:
        entry = self._replays.get(address)
        if entry is not None and entry[1] <= self._clock():
            self._replays.pop(address)
            return None
        return entry

    async def claim_replay(self, address: str, ttl_s: float) -> bool:
        if self._live(address) is not None:
            return False
        self._replays[address] = (None, self._clock() + ttl_s)
        return True

    async def put_replay(self, address: str, blob: bytes, ttl_s: float) -> None:
        self._replays[address] = (blob, self._clock() + ttl_s)

    async def get_replay(self, address: str) -> bytes | None:
        entry = self._live(address)
        return entry[0] if entry else None


class ReplayVault:
    """Idempotent rotate: the answer to replay, encrypted under a key only the caller's Idempotency-Key opens.

    The store holds ``address = H(key id, idempotency key)`` -> AES-GCM(k, new key) with
    ``k = HMAC(server secret, key id | idempotency key)``: whoever reads the store sees neither
    the idempotency key nor the new secret; the entry expires after ``ttl_s``.
    """

    def __init__(self, server_secret: str | None) -> None:
        self._secret = (server_secret or "").encode()

    def _material(self, key_id: str, idempotency_key: str) -> bytes:
        return hmac.new(self._secret, f"rotate|{key_id}|{idempotency_key}".encode(), hashlib.sha256).digest()

    def address(self, key_id: str, idempotency_key: str) -> str:
        return hashlib.sha256(self._material(key_id, idempotency_key)).hexdigest()

    def seal(self, key_id: str, idempotency_key: str, plaintext: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self._material(key_id, idempotency_key)).encrypt(nonce, plaintext.encode(), None)

    def open(self, key_id: str, idempotency_key: str, blob: bytes) -> str:
        aes = AESGCM(self._material(key_id, idempotency_key))
        return aes.decrypt(blob[:12], blob[12:], None).decode()
