"""Cache lookup latency at 10k / 100k / 1M entries, and a cache hit end to end through the ingress.

    python -m loadtests.bench.cache_lookup [--sizes 10000,100000,1000000] [--fill bulk|store]
                                           [--e2e-url http://127.0.0.1:8000]

All entries sit in one tenant scope (the worst case: one ANN graph holds them all). Measures the
ResponseCache in-process: exact hits, semantic misses (ANN search, nothing close) and semantic
lookups with a real candidate: GPTCache's paraphrase pairs (../shared/data) are stored with their
MiniLM vectors among the random bulk, then each paraphrase is looked up (ANN search + the verifier,
whose token vectors for both texts are computed on the spot, as for a first-time candidate).
The random bulk is filled in bulk by default (--fill bulk: the same entries store_response builds,
put into the LRU store, then the vectors go into the ANN graph with ScopedIndex.add_many in chunks,
usearch inserting on all cores); --fill store stores them one store_response at a time (the
serving path; ~190 s for 100k on a loaded 2-core machine, too slow for 1M). Fill time, the RSS
after the fill and the process's peak RSS are printed per size (sizes run in the order given, in
one process, so the peak RSS is the maximum so far).
With --e2e-url, also times repeated identical requests
(exact hits) and paraphrases through a running gateway, next to a cache-bypassing request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter

import httpx
import numpy as np

from app.caching.cache import ResponseCache
from app.caching.entries import CachedResponse, Entry
from app.caching.keys import CacheQuery, context_key, exact_key, normalize, scope_key
from app.caching.settings import CacheConfig


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _q(i: int, emb: np.ndarray | None) -> CacheQuery:
    return CacheQuery(tenant="bench", model="auto", messages=[{"role": "user", "content": f"question number {i}"}],
                      sampling={"max_tokens": 64, "temperature": 0.0}, embedding=emb)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3


def paraphrase_pairs(limit: int) -> list[tuple[str, str]]:
    from app.caching.train_verifier import PARAPHRASE_FILE
    from app.routing.train import shared_data_dir

    path = shared_data_dir() / PARAPHRASE_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["a"], r["b"]) for r in rows[:limit]]


def _text_q(text: str, emb: np.ndarray) -> CacheQuery:
    return CacheQuery(tenant="bench", model="auto", messages=[{"role": "user", "content": text}],
                      sampling={"max_tokens": 64, "temperature": 0.0}, embedding=emb)


def rss_gib() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**30


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def bulk_fill(cache: ResponseCache, vectors: np.ndarray, chunk: int = 50_000) -> None:
    """What store_response(_q(i, vectors[i]), ...) does for every i, in bulk: the same entries
    (keys from the same functions, random 62-bit ids, the same TTL) put into the LRU store one by
    one, then their vectors added to the scope's ANN graph chunk by chunk with add_many."""
    n = len(vectors)
    first = _q(0, vectors[0])
    scope, context = scope_key(first), context_key(first)  # the same for every bulk query (no earlier turns)
    ids = np.empty(n, dtype=np.uint64)
    t0 = time.perf_counter()
    for i in range(n):
        q = _q(i, vectors[i])
        entry = Entry(id=random.getrandbits(62), tenant=q.tenant, scope=scope, context=context, exact=exact_key(q),
                      question=normalize(q.last_user_text()), embedding=vectors[i],
                      response=CachedResponse(f"answer {i}", "stop", 5, 3, "m", 0.0),
                      max_tokens=q.max_tokens(), expires_at=time.time() + cache.cfg.ttl_seconds)
        assert not cache.store.put(entry)  # max_entries leaves room for everything: nothing evicted
        ids[i] = entry.id
    cache.counters["stores"] += n
    cache.tenant_counters.setdefault("bench", Counter())["stores"] += n
    print(f"  [{n}] {n} entries in the LRU store in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    t1 = time.perf_counter()
    for start in range(0, n, chunk):
        cache.index.add_many(context, ids[start:start + chunk], vectors[start:start + chunk])
        done = min(start + chunk, n)
        print(f"  [{n}] {done} vectors in the ANN graph, {time.perf_counter() - t1:.0f} s", file=sys.stderr, flush=True)


async def bench_size(n: int, probes: int = 300, fill: str = "bulk") -> dict[str, float]:
    import torch

    from app.embedding import embed_threads, get_embedder

    torch.set_num_threads(embed_threads())  # as in the cache actor
    rng = np.random.default_rng(0)
    cache = ResponseCache(CacheConfig(max_entries=n + probes + 10, max_bytes=1 << 40))
    cache.verifier.warm_up()
    vectors = _unit(rng.normal(size=(n, 384)))
    pairs = paraphrase_pairs(probes)
    emb = get_embedder()
    orig_vecs, para_vecs = emb.encode([a for a, _ in pairs]), emb.encode([b for _, b in pairs])
    t0 = time.perf_counter()
    if fill == "bulk":
        bulk_fill(cache, vectors)
    else:
        for i in range(n):
            await cache.store_response(_q(i, vectors[i]), CachedResponse(f"answer {i}", "stop", 5, 3, "m", 0.0))
    build = time.perf_counter() - t0
    rss_after_fill = rss_gib()
    for (a, _), v in zip(pairs, orig_vecs, strict=True):
        await cache.store_response(_text_q(a, v), CachedResponse(f"answer to {a}", "stop", 5, 3, "m", 0.0))
    exact, miss, hit = [], [], []
    outcomes: Counter[str] = Counter()
    for j in range(probes):
        i = int(rng.integers(n))
        t = time.perf_counter()
        await cache.lookup(_q(i, vectors[i]))
        exact.append(time.perf_counter() - t)
        t = time.perf_counter()
        await cache.lookup(_q(n + j, _unit(rng.normal(size=384))))
        miss.append(time.perf_counter() - t)
        if j < len(pairs):
            rejected_before = cache.counters["verifier_rejected"]
            t = time.perf_counter()
            found = await cache.lookup(_text_q(pairs[j][1], para_vecs[j]))
            hit.append(time.perf_counter() - t)
            if found is None:  # a verifier rejection, or the ANN search brought no candidate above the threshold
                outcomes["verifier rejected" if cache.counters["verifier_rejected"] > rejected_before
                         else "no candidate"] += 1
    return {"entries": n, "build_s": build, "exact_p50": pct(exact, 50), "exact_p99": pct(exact, 99),
            "miss_p50": pct(miss, 50), "miss_p99": pct(miss, 99), "semantic_p50": pct(hit, 50),
            "semantic_p99": pct(hit, 99), "semantic_hit_rate": cache.stats()["hit_semantic"] / len(hit),
            "semantic_rejected": outcomes["verifier rejected"] / len(hit),
            "semantic_no_candidate": outcomes["no candidate"] / len(hit),
            "rss_after_fill_gib": rss_after_fill, "peak_rss_gib": peak_rss_gib()}


def bench_e2e(url: str, n: int = 50) -> None:
    body = {"model": "small", "max_tokens": 32, "temperature": 0,
            "messages": [{"role": "user", "content": "What does the cache benchmark measure?"}]}
    with httpx.Client(base_url=url, timeout=120) as c:
        c.post("/v1/chat/completions", json=body)
        timings: dict[str, list[float]] = {"hit-exact": [], "hit-semantic": [], "bypass (model call)": []}
        para = {**body, "messages": [{"role": "user", "content": "What does the cache benchmark measure ?!"}]}
        for _ in range(n):
            for name, payload in (("hit-exact", body), ("hit-semantic", para),
                                  ("bypass (model call)", {**body, "cache": False})):
                t = time.perf_counter()
                resp = c.post("/v1/chat/completions", json=payload)
                timings[name].append(time.perf_counter() - t)
                if name != "bypass (model call)":
                    assert resp.headers.get("x-llmgw-cache", "").startswith("hit"), resp.headers
        base = np.median(timings["bypass (model call)"])
        for name, values in timings.items():
            print(f"e2e {name:22} p50={pct(values, 50):7.2f} ms p99={pct(values, 99):7.2f} ms "
                  f"(ratio to model call {np.median(values) / base:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--fill", choices=("bulk", "store"), default="bulk",
                        help="bulk: LRU store + chunked ScopedIndex.add_many; store: one store_response per entry")
    parser.add_argument("--e2e-url", default=None)
    args = parser.parse_args()
    print(f"{'entries':>9} {'fill s':>8} {'exact p50/p99 ms':>18} {'miss p50/p99 ms':>17} "
          f"{'semantic lookup p50/p99 ms':>27}", flush=True)
    for n in (int(s) for s in args.sizes.split(",")):
        r = asyncio.run(bench_size(n, fill=args.fill))
        print(f"{r['entries']:9d} {r['build_s']:8.1f} {r['exact_p50']:8.3f}/{r['exact_p99']:8.3f} "
              f"{r['miss_p50']:8.3f}/{r['miss_p99']:8.3f} {r['semantic_p50']:9.3f}/{r['semantic_p99']:9.3f}"
              f"  (semantic hit rate {r['semantic_hit_rate']:.2f}, not served: verifier rejected "
              f"{r['semantic_rejected']:.2f}, no ANN candidate {r['semantic_no_candidate']:.2f}; RSS after fill "
              f"{r['rss_after_fill_gib']:.2f} GiB, peak RSS so far {r['peak_rss_gib']:.2f} GiB)", flush=True)
    if args.e2e_url:
        bench_e2e(args.e2e_url)


if __name__ == "__main__":
    main()
