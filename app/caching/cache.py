"""ResponseCache: exact layer, semantic layer (ANN + verifier), stale lookups, TTL, LRU, Redis durability."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from typing import Any

import numpy as np

from app.caching.entries import CachedResponse, CacheHit, Entry, LRUStore
from app.caching.index import ScopedIndex
from app.caching.keys import CacheQuery, context_key, exact_key, normalize, scope_key
from app.caching.protection import EntryProtector
from app.caching.settings import CacheConfig
from app.caching.strictness import OperatingPoint, operating_point
from app.caching.token_features import encode_tokens
from app.embedding import embedding_kind, verifies_full_precision

logger = logging.getLogger(__name__)


class ResponseCache:
    def __init__(self, cfg: CacheConfig, verifier: Any | None = None) -> None:
        self.cfg = cfg
        self.embedding_kind = embedding_kind()  # stamped on stored entries; other kinds stay out of the index
        self.refine = verifies_full_precision()  # int8 index search, fp32 gate and verifier (the prefilter)
        self.store = LRUStore(cfg.max_entries, cfg.max_bytes)
        self.index = ScopedIndex(expansion_search=cfg.ann_expansion_search)
        self.verifier = verifier
        if verifier is None and cfg.semantic_enabled and cfg.verifier_enabled:
            from app.caching.verifier import PairVerifier

            self.verifier = PairVerifier.load()
        self.protector = EntryProtector(cfg.protection, cfg.encryption_key_env)  # raises on a missing key
        self.redis = None
        if cfg.redis_url:
            from app.caching.redis_store import RedisDurability

            self.redis = RedisDurability(cfg.redis_url, cfg.key_prefix, cfg.redis_timeout_s, cfg.redis_retry_s,
                                         self.protector)
        self.counters: Counter[str] = Counter()
        self.tenant_counters: dict[str, Counter[str]] = {}
        self.rebuild_status: dict[str, Any] = {"state": "idle" if self.redis is not None else "none", "loaded": 0}
        self._rebuild_task: asyncio.Task | None = None
        self._rebuild_filters: list[tuple[str | None, str | None]] | None = None  # invalidations during a rebuild

    # ---- lifecycle -------------------------------------------------------------------------
    def start_rebuild(self) -> asyncio.Task | None:
        """Rebuild from Redis in the background (retrying while Redis is down); lookups and stores go on
        meanwhile, answering from what is loaded so far (a miss for the rest). Needs a running loop."""
        if self.redis is not None and self._rebuild_task is None:
            self._rebuild_task = asyncio.get_running_loop().create_task(self._rebuild_until_done())
        return self._rebuild_task

    async def _rebuild_until_done(self) -> int:
        while True:
            try:
                return await self.rebuild()
            except Exception as exc:  # Redis down or failing midway: keep serving, try again later
                self.rebuild_status["state"] = "retrying"
                logger.warning("cache rebuild failed (%s); retrying in %.1f s", type(exc).__name__,
                               self.cfg.redis_retry_s)
                await asyncio.sleep(self.cfg.redis_retry_s)

    async def rebuild(self, batch: int = 500, chunk: int = 100) -> int:
        """Load live entries from Redis into memory and the index (after a restart), one SCAN page at a
        time, inserted ``chunk`` entries at a time, yielding to lookups and stores in between. Entries
        already in memory (stored meanwhile or loaded by an earlier attempt) are kept; invalidations made
        meanwhile also apply to the rest. Raises if Redis fails midway (what was loaded stays).
        Returns the number of entries loaded."""
        if self.redis is None:
            return 0
        started = time.perf_counter()
        self.rebuild_status["state"] = "running"
        if self._rebuild_filters is None:  # kept across failed attempts: an invalidation between them counts
            self._rebuild_filters = []
        loaded = 0
        async for page in self.redis.iter_entries(batch):
            for i in range(0, len(page), chunk):  # hold the event loop for one chunk at a time
                n = await self._insert_rebuilt(page[i : i + chunk])
                loaded += n
                self.rebuild_status["loaded"] += n
                await asyncio.sleep(0)
        self._rebuild_filters = None
        seconds = round(time.perf_counter() - started, 3)
        self.rebuild_status.update(state="done", seconds=seconds)
        logger.info("cache rebuilt %d entries from redis in %.1f s", loaded, seconds)
        return loaded

    async def _insert_rebuilt(self, page: list[Entry]) -> int:
        now, stale, keep = time.time(), [], []
        for entry in page:
            if entry.id in self.store.entries:
                continue
            held = self.store.entries.get(self.store.by_exact.get(entry.exact, -1))  # same prompt: newer wins
            if (entry.expired(now) or self._invalidated_meanwhile(entry)
                    or (held is not None and held.response.created >= entry.response.created)):
                stale.append(entry.id)
            else:
                keep.append(entry)
        adds: dict[int, Entry] = {}
        for entry in keep:
            if entry.embedding is not None and entry.embedding_kind != self.embedding_kind:
                entry.embedding = None  # another embedding runtime's vector: served exactly, never by similarity
            for old in self.store.put(entry):
                stale.append(old.id)
                if adds.pop(old.id, None) is None:
                    self.index.remove(old.context, old.id)
            if entry.embedding is not None:
                adds[entry.id] = entry
        by_context: dict[str, list[Entry]] = {}
        for entry in adds.values():
            by_context.setdefault(entry.context, []).append(entry)
        for context, entries in by_context.items():  # one usearch call per context
            self.index.add_many(context, np.array([e.id for e in entries], dtype=np.uint64),
                                np.stack([e.embedding for e in entries]), threads=1)
        if stale and self.redis is not None:
            await self.redis.delete(stale)
        return len(keep)

    def _invalidated_meanwhile(self, entry: Entry) -> bool:
        return any(tenant is None or (entry.tenant == tenant and (prefix is None or entry.question.startswith(prefix)))
                   for tenant, prefix in self._rebuild_filters or ())

    def _insert(self, entry: Entry) -> list[Entry]:
        evicted = self.store.put(entry)
        for old in evicted:
            self.index.remove(old.context, old.id)
        if entry.embedding is not None:
            self.index.add(entry.context, entry.id, entry.embedding)
        return evicted

    def _count(self, tenant: str, name: str) -> None:
        self.counters[name] += 1
        self.tenant_counters.setdefault(tenant, Counter())[name] += 1

    async def _drop(self, entries: list[Entry]) -> None:
        for entry in entries:
            if entry.id in self.store.entries:
                self.store.pop(entry.id)
            self.index.remove(entry.context, entry.id)
        if self.redis is not None:
            await self.redis.delete(e.id for e in entries)

    # ---- lookups ---------------------------------------------------------------------------
    async def lookup(self, q: CacheQuery) -> CacheHit | None:
        now = time.time()
        if self.cfg.exact_enabled:
            entry = self.store.get_exact(exact_key(q))
            if entry is not None and entry.expired(now):
                await self._drop([entry])
                self._count(q.tenant, "expired")
            elif entry is not None and entry.serves(q.max_tokens()):
                self._count(q.tenant, "hit_exact")
                return CacheHit(entry.response, "exact", 1.0)
        if self.cfg.semantic_enabled and q.embedding is not None:
            point = operating_point(self.cfg, q.strictness, getattr(self.verifier, "threshold", None))
            search_gate = point.gate - self.cfg.prefilter_margin if self.refine else point.gate
            candidates = await self._candidates(q, search_gate, now)
            # All candidates in one go (one model forward), off the event loop.
            verdicts = await asyncio.to_thread(self._judge, q, candidates, point) if candidates else []
            for entry, sim, accepted in verdicts:
                if not accepted:
                    self._count(q.tenant, "verifier_rejected")
                    continue
                self.store.get(entry.id)  # touch for LRU
                self._count(q.tenant, "hit_semantic")
                return CacheHit(entry.response, "semantic", sim)
        self._count(q.tenant, "miss")
        return None

    def _judge(self, q: CacheQuery, candidates: list[tuple[Entry, float]], point: OperatingPoint
               ) -> list[tuple[Entry, float, bool]]:
        """(entry, similarity, served?) per candidate, best first; with the prefilter, only those whose fp32
        similarity reaches the gate, with that similarity."""
        full = None
        if self.refine:
            candidates, full = self._full_precision(q, candidates, point.gate)
            if not candidates:
                return []
        verdicts = self._verified(q, [e for e, _ in candidates], point.threshold, point.slot_veto, full)
        return [(e, s, ok) for (e, s), ok in zip(candidates, verdicts, strict=True)]

    def _full_precision(self, q: CacheQuery, found: list[tuple[Entry, float]], gate: float
                        ) -> tuple[list[tuple[Entry, float]], tuple[np.ndarray, dict[int, np.ndarray]]]:
        """The prefilter's second step: fp32 sentence vectors of the query and each candidate's question (one
        forward, shared with the verifier's token views, remembered per text), and the candidates whose fp32
        similarity reaches the level's gate, with that similarity."""
        query = normalize(q.last_user_text())
        texts = [query, *[e.question for e, _ in found]]
        views = (self.verifier.token_views(texts) if hasattr(self.verifier, "token_views")
                 else encode_tokens(texts))
        eq = views[0].sentence
        vectors = {e.id: v.sentence for (e, _), v in zip(found, views[1:], strict=True)}
        kept = sorted(((e, float(np.dot(eq, vectors[e.id]))) for e, _ in found), key=lambda c: -c[1])
        return [(e, s) for e, s in kept if s >= gate], (eq, vectors)

    def _verified(self, q: CacheQuery, entries: list[Entry], threshold: float | None = None,
                  slot_veto: bool = False, full: tuple[np.ndarray, dict[int, np.ndarray]] | None = None
                  ) -> list[bool]:
        if self.verifier is None or not self.cfg.verifier_enabled:
            return [True] * len(entries)
        query = normalize(q.last_user_text())
        eq, ec = (q.embedding, [e.embedding for e in entries]) if full is None else (
            full[0], [full[1][e.id] for e in entries])
        if hasattr(self.verifier, "accept_many"):
            extra = {"slot_veto": True} if slot_veto else {}  # verifiers without the veto keep working
            return self.verifier.accept_many(query, [e.question for e in entries], eq, ec, threshold, **extra)
        return [self.verifier.accept(query, e.question, eq, c, threshold) for e, c in zip(entries, ec, strict=True)]

    async def _candidates(self, q: CacheQuery, min_sim: float, now: float, k: int = 4) -> list[tuple[Entry, float]]:
        found = []
        expired = []
        for entry_id, sim in self.index.search(context_key(q), q.embedding, k):
            entry = self.store.entries.get(entry_id)
            if entry is None:
                continue
            if entry.expired(now):
                expired.append(entry)
            elif sim >= min_sim and entry.serves(q.max_tokens()):
                found.append((entry, sim))
        if expired:
            await self._drop(expired)
        return found

    async def stale_lookup(self, q: CacheQuery, min_similarity: float) -> CacheHit | None:
        """Best match below the normal gate, unverified, similarity >= ``min_similarity``
        (``fallback.stale_min_similarity``, the one setting); for the fallback chain's degraded answer."""
        entry = self.store.get_exact(exact_key(q))
        if entry is not None:
            self._count(q.tenant, "hit_stale")
            return CacheHit(entry.response, "stale", 1.0)
        if q.embedding is None:
            return None
        candidates = await self._candidates(q, min_similarity, time.time(), k=1)
        if not candidates:
            return None
        entry, sim = candidates[0]
        self._count(q.tenant, "hit_stale")
        return CacheHit(entry.response, "stale", sim)

    # ---- writes ----------------------------------------------------------------------------
    async def store_response(self, q: CacheQuery, r: CachedResponse, ttl_seconds: int | None = None) -> None:
        if not self.protector.admits(q.tenant, q.last_user_text(), r.text):
            self._count(q.tenant, "not_stored_pii")  # the tenant's protection is "redact"
            return
        ttl = ttl_seconds or self.cfg.ttl_seconds
        entry = Entry(
            id=random.getrandbits(62),
            tenant=q.tenant,
            scope=scope_key(q),
            context=context_key(q),
            exact=exact_key(q),
            question=normalize(q.last_user_text()),
            embedding=None if q.embedding is None else np.asarray(q.embedding, dtype=np.float32),
            response=r,
            max_tokens=q.max_tokens(),
            expires_at=time.time() + ttl,
            embedding_kind=self.embedding_kind,
        )
        evicted = self._insert(entry)
        self._count(q.tenant, "stores")
        if evicted:
            self.counters["evictions"] += len(evicted)
        if self.redis is not None:
            await self.redis.write(entry)
            await self.redis.delete(e.id for e in evicted)

    async def invalidate(self, tenant: str, prefix: str | None = None) -> int:
        """Drop a tenant's entries (optionally only those whose prompt starts with ``prefix``)."""
        norm = normalize(prefix) if prefix else None
        if self._rebuild_filters is not None:  # entries still in Redis, not loaded yet, are dropped on load
            self._rebuild_filters.append((tenant, norm))
        victims = [e for e in self.store.entries.values()
                   if e.tenant == tenant and (norm is None or e.question.startswith(norm))]
        await self._drop(victims)
        return len(victims)

    async def flush(self) -> int:
        if self._rebuild_filters is not None:
            self._rebuild_filters.append((None, None))
        victims = list(self.store.entries.values())
        await self._drop(victims)
        self.index.clear()
        return len(victims)

    def stats(self, tenant: str | None = None) -> dict[str, Any]:
        counters = self.counters if tenant is None else self.tenant_counters.get(tenant, Counter())
        entries = self.store.entries.values()
        out: dict[str, Any] = {
            "entries": len(self.store) if tenant is None else sum(1 for e in entries if e.tenant == tenant),
            **{k: counters.get(k, 0) for k in ("hit_exact", "hit_semantic", "hit_stale", "miss",
                                               "verifier_rejected", "stores", "expired", "not_stored_pii")},
        }
        lookups = out["hit_exact"] + out["hit_semantic"] + out["miss"]
        out["hit_rate"] = round((out["hit_exact"] + out["hit_semantic"]) / lookups, 4) if lookups else 0.0
        if tenant is None:
            out.update(bytes=self.store.bytes, evictions=self.counters.get("evictions", 0),
                       redis_configured=self.redis is not None,
                       redis_up=None if self.redis is None else self.redis.up,
                       redis_errors=0 if self.redis is None else self.redis.errors,
                       redis_pending=0 if self.redis is None else len(self.redis.pending_writes),
                       rebuild=dict(self.rebuild_status),
                       embedding_kind=self.embedding_kind, prefilter=self.refine)
        return out
