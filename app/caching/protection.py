"""Per-tenant protection of cache entries at rest in Redis (``cache.protection``, docs/cache.md).

* ``none``: prompt, answer and embedding stored as they are (readable by anyone who can read Redis).
* ``encrypt``: the whole entry (prompt, answer, embedding, metadata) sealed with AES-256-GCM under the
  key in ``$<cache.encryption_key_env>`` (base64 of 32 bytes); the entry's Redis key and tenant are the
  associated data, so a sealed value moved to another key or tenant does not open.
* ``redact``: the PII redactor runs before store; an entry in which it finds anything is not cached at
  all (storing the redacted text would serve ``[EMAIL]`` placeholders as answers).
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Mapping
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.observability.redact import redact

Mode = Literal["none", "encrypt", "redact"]
SEALED, TENANT = b"sealed", b"tenant"
_NONCE = 12


class ProtectionConfigError(ValueError):
    """The protection settings cannot work (no key / bad key); raised at start-up, never per request."""


def load_key(env_name: str, env: Mapping[str, str] = os.environ) -> bytes:
    raw = env.get(env_name)
    if not raw:
        raise ProtectionConfigError(f"cache.protection asks for encryption but ${env_name} is not set")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ProtectionConfigError(f"${env_name} must hold 32 bytes, base64-encoded "
                                    "(python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')")
    return key


class EntryProtector:
    """Applies each tenant's mode; ``"*"`` in ``modes`` is the default for tenants not listed."""

    def __init__(self, modes: Mapping[str, Mode], key_env: str, env: Mapping[str, str] = os.environ) -> None:
        self.modes = dict(modes)
        self._aead = AESGCM(load_key(key_env, env)) if "encrypt" in self.modes.values() else None

    def mode(self, tenant: str) -> Mode:
        return self.modes.get(tenant, self.modes.get("*", "none"))

    def admits(self, tenant: str, *texts: str) -> bool:
        """False when the tenant's mode is ``redact`` and a text holds something the redactor would replace."""
        return self.mode(tenant) != "redact" or not any(redact(t).total for t in texts if t)

    def seal(self, redis_key: str, tenant: str, fields: dict[str, bytes]) -> dict[str, bytes]:
        """The Redis hash fields to write for this entry (sealed for ``encrypt`` tenants)."""
        if self.mode(tenant) != "encrypt" or self._aead is None:
            return fields
        meta, emb = fields["meta"], fields.get("emb", b"")
        nonce = os.urandom(_NONCE)
        plain = struct.pack(">I", len(meta)) + meta + emb
        blob = nonce + self._aead.encrypt(nonce, plain, _aad(redis_key, tenant))
        return {SEALED.decode(): blob, TENANT.decode(): tenant.encode()}

    def open(self, redis_key: str | bytes, fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
        """The plain fields of a stored entry (unchanged if it was not sealed). Raises ValueError when a
        sealed entry cannot be opened (no key configured, another key, or tampered)."""
        if SEALED not in fields:
            return fields
        if self._aead is None:
            raise ValueError("sealed cache entry but no encryption key configured")
        key = redis_key.decode() if isinstance(redis_key, bytes) else redis_key
        blob, tenant = fields[SEALED], fields.get(TENANT, b"").decode()
        try:
            plain = self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], _aad(key, tenant))
        except InvalidTag as exc:
            raise ValueError("sealed cache entry does not open with this key") from exc
        (n,) = struct.unpack(">I", plain[:4])
        out = {b"meta": plain[4 : 4 + n]}
        if len(plain) > 4 + n:
            out[b"emb"] = plain[4 + n :]
        return out


def _aad(redis_key: str, tenant: str) -> bytes:
    return f"{redis_key}\x00{tenant}".encode()
