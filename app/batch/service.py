"""What the HTTP handlers call: files, batches and async requests of one tenant (no HTTP here)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from app.batch.billing import Ledger, NullLedger, make_estimator, subjects_for
from app.batch.keys import new_id
from app.batch.records import batch_object, check_metadata, file_object, job_object, window_seconds
from app.batch.settings import BatchConfig
from app.batch.status import check_cancellable, sources
from app.batch.store import BatchStore, connect
from app.batch.validation import SUPPORTED_ENDPOINTS, FileCheck, LineValidator
from app.errors import InvalidRequestError, ModelNotFoundError
from app.schemas import ChatCompletionRequest, validation_error

ASYNC_ENDPOINTS = ("/v1/chat/completions",)


def model_prices(cfg: Any) -> dict[str, list[str]]:
    """Each model name a client may send -> the price-table names its request may be billed as."""
    pools = {p.name: [p.engine.name, p.name] for p in cfg.pools}
    everything = [n for names in pools.values() for n in names]
    return {name: (pools[pool] if pool else everything) for name, pool in cfg.model_names().items()}


def redis_url_of(cfg: Any) -> str | None:
    """``batch.redis_url``, else the top-level ``redis.url``; None when neither is configured."""
    redis = getattr(cfg, "redis", None)
    return cfg.batch.redis_url or (getattr(redis, "url", None) if redis is not None else None)


class BatchService:
    def __init__(self, store: BatchStore, *, names: dict[str, str], prices: dict[str, list[str]],
                 default_max_tokens: int, ledger: Ledger | None = None) -> None:
        self.store = store
        self.cfg: BatchConfig = store.cfg
        self.names = names
        self.estimate = make_estimator(prices, default_max_tokens)
        self.ledger = ledger or NullLedger()

    @classmethod
    def from_config(cls, cfg: Any, ledger: Ledger | None = None, url: str | None = None) -> BatchService | None:
        """None when the lane is off or has no Redis (its endpoints then answer 404)."""
        url = url or redis_url_of(cfg)
        if not cfg.batch.enabled or not url:
            return None
        return cls(BatchStore(connect(url), cfg.batch), names=cfg.model_names(), prices=model_prices(cfg),
                   default_max_tokens=cfg.ingress.default_max_tokens, ledger=ledger)

    # ---- files --------------------------------------------------------------------------------
    def new_upload(self) -> Upload:
        """An upload being streamed: ``write`` each chunk, then ``commit`` (or ``abort``)."""
        return Upload(self)

    async def get_file(self, tenant: str, fid: str) -> dict:
        return file_object(await self.store.file(tenant, fid))

    async def list_files(self, tenant: str, limit: int = 20, after: str | None = None,
                         purpose: str | None = None) -> dict:
        items = await self.store.files(tenant, limit, after, purpose)
        return _page([file_object(m) for m in items], limit)

    async def delete_file(self, tenant: str, fid: str) -> dict:
        await self.store.delete_file(tenant, fid)
        return {"id": fid, "object": "file", "deleted": True}

    async def file_content(self, tenant: str, fid: str) -> AsyncIterator[bytes]:
        meta = await self.store.file(tenant, fid)
        return self.store.content(meta)

    # ---- batches ------------------------------------------------------------------------------
    async def create_batch(self, tenant: str, key_id: str | None, body: dict[str, Any],
                           models: tuple[str, ...] | None = None) -> dict:
        """``models``: the key's allowed models (None: all); lines run with the same scope."""
        endpoint = body.get("endpoint")
        if endpoint not in SUPPORTED_ENDPOINTS:
            raise InvalidRequestError(f"endpoint must be one of {', '.join(SUPPORTED_ENDPOINTS)}.", param="endpoint")
        window = body.get("completion_window")
        seconds = window_seconds(window if isinstance(window, str) else "", self.cfg.max_completion_window_s)
        metadata = check_metadata(body.get("metadata"))
        webhook_url = _webhook_url(body.get("webhook_url"))
        fid = body.get("input_file_id")
        meta = await self.store.file(tenant, fid if isinstance(fid, str) else "")
        if meta.get("purpose") != "batch" or not meta.get("check"):
            raise InvalidRequestError(f"File {fid} was not uploaded with purpose 'batch'.", param="input_file_id")
        check = FileCheck.from_dict(json.loads(meta["check"]))
        now = time.time()  # the window runs from this instant (an int here cut up to 1 s off it)
        h = {"id": new_id("batch"), "tenant": tenant, "key_id": key_id or "", "endpoint": endpoint,
             "input_file_id": fid, "completion_window": window, "status": "validating",
             "created_at": str(int(now)), "expires_at": repr(now + seconds), "total": "0", "completed": "0",
             "failed": "0", "cost_usd": "0",
             "metadata": json.dumps(metadata) if metadata else "", "webhook_url": webhook_url or "",
             "worst_usd": repr(check.worst_usd), "key_models": _models(models)}
        errors = check.batch_errors(endpoint)
        if errors:  # validating -> failed, naming the lines
            h.update(status="failed", failed_at=str(int(now)), errors=json.dumps(errors), total=str(check.lines))
            await self.store.put_batch(h, start=False)
            return batch_object(h)
        h["reservation"] = await self.ledger.reserve(subjects_for(tenant, key_id), check.worst_usd)
        await self.store.put_batch(h, start=True)
        return batch_object(h)

    async def get_batch(self, tenant: str, bid: str) -> dict:
        return batch_object(await self.store.batch(tenant, bid))

    async def list_batches(self, tenant: str, limit: int = 20, after: str | None = None) -> dict:
        return _page([batch_object(h) for h in await self.store.batches(tenant, limit, after)], limit)

    async def cancel_batch(self, tenant: str, bid: str) -> dict:
        h = await self.store.batch(tenant, bid)
        if h["status"] != "cancelling":
            check_cancellable(h["status"], bid)
            await self.store.transition(bid, "cancelling", "cancelling_at", sources("cancelling"))
            await self.store.redis.hsetnx(self.store.keys.batch(bid), "stop", "cancel")
        return batch_object(await self.store.batch(tenant, bid))

    # ---- async single requests ------------------------------------------------------------------
    async def create_job(self, tenant: str, key_id: str | None, endpoint: str, body: dict[str, Any],
                         models: tuple[str, ...] | None = None) -> dict:
        if endpoint not in ASYNC_ENDPOINTS:
            raise InvalidRequestError(f"Async requests support {', '.join(ASYNC_ENDPOINTS)}.")
        webhook_url = _webhook_url(body.pop("webhook_url", None))
        metadata = check_metadata(body.pop("metadata", None))
        try:
            parsed = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        if parsed.stream:
            raise InvalidRequestError("An async request cannot stream; drop 'stream'.", param="stream")
        if parsed.model not in self.names:
            raise ModelNotFoundError(f"The model '{parsed.model}' does not exist.", param="model")
        _, usd = self.estimate(body, endpoint)
        now = int(time.time())
        h = {"id": new_id("asyncreq"), "tenant": tenant, "key_id": key_id or "", "endpoint": endpoint,
             "status": "queued", "created_at": str(now), "body": json.dumps(body), "webhook_url": webhook_url or "",
             "metadata": json.dumps(metadata) if metadata else "", "key_models": _models(models)}
        h["reservation"] = await self.ledger.reserve(subjects_for(tenant, key_id), usd)
        await self.store.put_job(h)
        return job_object(h)

    async def get_job(self, tenant: str, jid: str) -> dict:
        return job_object(await self.store.job(tenant, jid))


class Upload:
    """Stores the bytes as chunks and validates the JSONL lines as they stream past."""

    def __init__(self, service: BatchService) -> None:
        self.file = service.store.upload()
        self.validator = LineValidator(service.cfg.max_lines, service.estimate)

    async def write(self, chunk: bytes) -> None:
        await self.file.write(chunk)
        self.validator.feed(chunk)

    async def commit(self, tenant: str, filename: str, purpose: str) -> dict:
        if purpose != "batch":
            await self.abort()
            raise InvalidRequestError("Only purpose 'batch' is supported.", param="purpose")
        return file_object(await self.file.commit(tenant, filename, purpose, self.validator.finish()))

    async def abort(self) -> None:
        await self.file.abort()


def _models(models: tuple[str, ...] | None) -> str:
    return "" if models is None else json.dumps(list(models))


def _webhook_url(value: Any) -> str | None:
    """Shape check only; the webhook sender refuses private/loopback targets unless allow-listed."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")) or len(value) > 2048:
        raise InvalidRequestError("webhook_url must be an http(s) URL.", param="webhook_url")
    return value


def _page(data: list[dict], limit: int) -> dict:
    has_more = len(data) > limit
    data = data[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}
