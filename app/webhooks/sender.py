"""The one webhook sender: Standard Webhooks headers, HMAC-SHA256 signatures, retries, dedup, SSRF guard.

``await sender.send(url, event_type, data, event_id=None, secret=...)`` posts
``{"type", "timestamp", "data"}`` with ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` (a ``whsec_`` secret is
base64-decoded first, as the spec says). Retries with exponential backoff on connection errors,
timeouts, 408/429/5xx (the same id, a fresh timestamp and signature per attempt); an event id
delivered once is not sent again (per process, and across replicas when a Redis is given).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

from app.policy.settings import WebhookSettings
from app.webhooks.ssrf import Resolver, Target, WebhookTargetRefused, check_target, resolve

logger = logging.getLogger("llmgw.webhooks")
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    status: str  # delivered | duplicate | failed | refused
    attempts: int = 0
    status_code: int | None = None


class _Retryable(Exception):
    def __init__(self, status_code: int | None = None) -> None:
        super().__init__(status_code)
        self.status_code = status_code


def signing_key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str | bytes, headers: dict[str, str], body: bytes, tolerance_s: float = 300) -> bool:
    """Receiver side (tests, docs): the signature matches and the timestamp is recent."""
    ts = int(headers["webhook-timestamp"])
    if abs(time.time() - ts) > tolerance_s:
        return False
    expected = sign(secret, headers["webhook-id"], ts, body).split(",", 1)[1]
    return any(hmac.compare_digest(expected, s.split(",", 1)[1]) for s in headers["webhook-signature"].split())


class WebhookSender:
    def __init__(self, settings: WebhookSettings | None = None, *, resolver: Resolver = resolve,
                 redis=None, redis_prefix: str = "llmgw:webhooks", dedup_size: int = 10_000) -> None:
        self.cfg = settings or WebhookSettings()
        self.resolver = resolver
        self.redis, self.redis_prefix = redis, redis_prefix
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._dedup_size = dedup_size

    async def _claim(self, event_id: str) -> bool:
        if event_id in self._sent:
            return False
        if self.redis is not None:
            return bool(await self.redis.set(f"{self.redis_prefix}:sent:{event_id}", b"1", nx=True, ex=7 * 86_400))
        return True

    async def _unclaim(self, event_id: str) -> None:
        if self.redis is not None:
            await self.redis.delete(f"{self.redis_prefix}:sent:{event_id}")

    def _remember(self, event_id: str) -> None:
        self._sent[event_id] = None
        while len(self._sent) > self._dedup_size:
            self._sent.popitem(last=False)

    async def send(self, url: str, event_type: str, data: dict[str, Any], event_id: str | None = None,
                   secret: str | bytes | None = None) -> Delivery:
        event_id = event_id or f"msg_{uuid.uuid4().hex}"
        try:
            target = await check_target(url, self.cfg.allow_hosts, self.resolver)
        except WebhookTargetRefused as exc:
            logger.warning("webhook %s refused: %s", event_id, exc)
            return Delivery(event_id, "refused")
        if not await self._claim(event_id):
            return Delivery(event_id, "duplicate")
        now = datetime.now(UTC)
        body = json.dumps({"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"),
                           "data": data}, separators=(",", ":")).encode()
        attempts = 0
        try:
            async with httpx.AsyncClient(timeout=self.cfg.timeout_s, follow_redirects=False, trust_env=False) as client:
                retrying = AsyncRetrying(
                    stop=stop_after_attempt(self.cfg.max_attempts),
                    wait=wait_exponential(multiplier=self.cfg.backoff_base_s, max=self.cfg.backoff_max_s),
                    retry=retry_if_exception_type(_Retryable), reraise=False)
                async for attempt in retrying:
                    with attempt:
                        attempts += 1
                        code = await self._post(client, target, event_id, body, secret)
            self._remember(event_id)
            return Delivery(event_id, "delivered", attempts, code)
        except (RetryError, _Retryable, _Refused) as exc:
            await self._unclaim(event_id)
            code = _status_of(exc)
            logger.warning("webhook %s (%s) not delivered after %d attempts (last status %s)", event_id,
                           event_type, attempts, code)
            return Delivery(event_id, "failed", attempts, code)

    async def _post(self, client: httpx.AsyncClient, target: Target, event_id: str, body: bytes,
                    secret: str | bytes | None) -> int:
        ts = int(time.time())
        headers = {"content-type": "application/json", "user-agent": "llm-gateway-webhooks/1",
                   "webhook-id": event_id, "webhook-timestamp": str(ts)}
        if secret:
            headers["webhook-signature"] = sign(secret, event_id, ts, body)
        url = httpx.URL(target.url)
        pinned = url.copy_with(host=target.address)  # connect to the address the guard checked
        headers["host"] = url.netloc.decode()
        extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
        try:
            resp = await client.post(pinned, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            raise _Retryable(None) from exc
        if resp.status_code in RETRY_STATUS:
            raise _Retryable(resp.status_code)
        if resp.status_code >= 300:
            raise _Refused(resp.status_code)
        return resp.status_code


class _Refused(Exception):
    """A 3xx/4xx answer that retrying will not change."""

    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


def _status_of(exc: BaseException) -> int | None:
    if isinstance(exc, RetryError):
        exc = exc.last_attempt.exception() or exc
    return getattr(exc, "status_code", None)

