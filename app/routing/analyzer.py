"""The router's work in any process: embed the last user turn (batched, memoised) and classify it.

Used by the Router deployment and, with ``router.placement: ingress`` (the default), inside each
ingress replica, so the hot path makes no router hop (docs/decisions.md). Both give identical
verdicts: same model, same classifier, same rule (``app.route_decision.decide_route``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from app.config import RouterConfig
from app.embedding import EmbeddingMemo
from app.route_decision import RouteDecision, decide_route, route_threshold

logger = logging.getLogger(__name__)
MAX_EMBED_CHARS = 4000  # MiniLM reads 256 word pieces; longer text only costs tokenizer time
EncodeFn = Callable[[list[str]], np.ndarray]


class BatchingEmbedder:
    """Embeds on one worker thread; texts that arrive while a batch runs go together into the next.

    Idle, a text is encoded at once (no wait for company); under load, batches form by themselves.
    The event loop never blocks: torch runs in the worker thread.
    """

    def __init__(self, encode: EncodeFn, max_batch: int = 32, memo_size: int = 2048) -> None:
        self.encode = encode
        self.max_batch = max_batch
        self.memo = EmbeddingMemo(memo_size)
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._draining = False
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="llmgw-embed")
        self._lock = threading.Lock()  # the memo is shared with embed_sync's worker threads
        self._inflight: dict[str, Future] = {}  # text -> its vector, being encoded by some thread

    def _get(self, text: str) -> np.ndarray | None:
        with self._lock:
            return self.memo.get(text)

    async def embed(self, text: str) -> np.ndarray:
        text = text[:MAX_EMBED_CHARS]
        vector = self._get(text)
        if vector is not None:
            return vector
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((text, future))
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())  # referenced: not collected mid-batch
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                texts = list(dict.fromkeys(t for t, _ in batch))
                try:
                    vectors = await loop.run_in_executor(self._executor, self._encode_once, texts)
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                by_text = dict(zip(texts, vectors, strict=True))
                for text, fut in batch:
                    if not fut.done():
                        fut.set_result(by_text[text])
        finally:
            self._draining = False

    def _encode_once(self, texts: list[str]) -> list[np.ndarray]:
        """Vectors of ``texts`` (distinct), each encoded by one thread at a time: a text another thread is
        already encoding (the guard's classifier and the route's embedding of the same prompt run side by side)
        is waited for, not encoded twice. Own texts are encoded before any wait, so two callers never deadlock."""
        own: dict[str, Future] = {}
        theirs: dict[str, Future] = {}
        with self._lock:
            for t in texts:
                if (v := self.memo.get(t)) is not None:
                    done: Future = Future()
                    done.set_result(v)
                    theirs[t] = done
                elif t in self._inflight:
                    theirs[t] = self._inflight[t]
                else:
                    own[t] = self._inflight[t] = Future()
        if own:
            try:
                vectors = self.encode(list(own))
            except BaseException as exc:
                with self._lock:
                    for t, fut in own.items():
                        self._inflight.pop(t, None)
                        fut.set_exception(exc)
                raise
            with self._lock:
                for (t, fut), v in zip(own.items(), vectors, strict=True):
                    self.memo.put(t, v)
                    self._inflight.pop(t, None)
                    fut.set_result(v)
        return [(own.get(t) or theirs[t]).result() for t in texts]

    async def in_worker(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the embedding thread (the one model worker of this process)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """For callers already on a worker thread (the injection guard): memo first, then encode the rest."""
        keys = [t[:MAX_EMBED_CHARS] for t in texts]
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        distinct = list(dict.fromkeys(keys))
        found = dict(zip(distinct, self._encode_once(distinct), strict=True))  # memo, in flight, or encoded here
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


class RouteAnalyzer:
    """Embedding + classifier verdicts; ``counters`` as the Router deployment reports them."""

    def __init__(self, config: RouterConfig, embedder: BatchingEmbedder, classifier: Any = None,
                 encode_full: EncodeFn | None = None) -> None:
        self.config = config
        self.embedder = embedder
        self.encode_full = encode_full or embedder.encode  # /v1/embeddings: fp32 even under the int8 prefilter
        self.classifier = classifier
        self.counters = {"decisions": 0, "fallbacks": 0, "embed_errors": 0}

    @classmethod
    def load(cls, config: RouterConfig, encode: EncodeFn | None = None) -> RouteAnalyzer:
        """The bundled (or configured) classifier and the process's MiniLM; a broken artifact routes to the default."""
        encode_full = None
        if encode is None:
            from app.embedding import get_embedder

            encode, encode_full = get_embedder().encode, get_embedder().encode_full
        classifier = None
        if config.enabled:
            try:
                from app.routing.classifier import RouterClassifier

                classifier = RouterClassifier.load(config.artifact)
            except Exception as exc:  # a missing/corrupt artifact must not take the gateway down
                logger.error("router classifier unavailable, routing to %s: %s", config.default_pool, exc)
        return cls(config, BatchingEmbedder(encode, config.max_batch_size), classifier, encode_full)

    async def embed(self, text: str) -> np.ndarray | None:
        try:
            return await self.embedder.embed(text)
        except Exception as exc:
            self.counters["embed_errors"] += 1
            logger.warning("embedding failed: %s", type(exc).__name__)
            return None

    async def analyze(self, text: str, classify: bool, *, large_share: float | None = None,
                      turns: int = 1) -> RouteDecision:
        embedding = await self.embed(text)
        if not classify:
            return RouteDecision(pool=self.config.default_pool, score=None, embedding=embedding, reason="not-routed")
        decision = decide_route(self.classifier, text, embedding, self.config, large_share, turns)
        self.counters["decisions"] += 1
        if decision.reason != "classifier":
            self.counters["fallbacks"] += 1
            logger.warning("router fallback to %s (%s)", decision.pool, decision.reason)
        return decision

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed_sync(texts)

    async def embed_batch(self, texts: list[str]) -> list[list[float]]:
        """``/v1/embeddings`` in-process: the worker thread, no memo (inputs may be large)."""
        vectors = await self.embedder.in_worker(self.encode_full, list(texts))
        return [v.tolist() for v in vectors]

    def stats(self) -> dict[str, Any]:
        memo = self.embedder.memo
        return {**self.counters, "embed_memo_hits": memo.hits, "embed_memo_size": len(memo),
                "classifier": getattr(self.classifier, "version", None), "threshold": self.threshold()}

    def threshold(self) -> float | None:
        if self.classifier is None:
            return self.config.threshold
        try:
            return route_threshold(self.classifier, self.config)
        except Exception:
            return None
