"""How long a cache replica takes to rebuild N entries from Redis, and what lookups cost meanwhile.

    nice -n 19 python -m loadtests.bench.cache_rebuild [--entries 100000] [--tenants 20] [--port 6397]

Starts its own redis-server on --port (``--save '' --appendonly no``; never the machine's Redis),
fills it with N entries as a serving replica would have written them (384-d float32 embedding,
~100-character question, ~300-character answer, spread over --tenants scopes), then builds a fresh
ResponseCache and runs ``start_rebuild()`` while a probe issues one lookup every 5 ms (alternately an
exact lookup of a random seeded prompt and a semantic lookup near a random seeded vector). Prints the
rebuild time (wall and this process's CPU: under ``nice`` on a busy machine the wall time is mostly
waiting for a core), entries/s, the CPU time each SCAN page holds the event loop (the longest a lookup
can wait on a free core), the probe's lookup latency during the rebuild (p50/p99/max, wall), how many
probes already hit, and the process RSS before and after. Stops the redis-server at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import time

import numpy as np
import redis

from app.caching.cache import ResponseCache
from app.caching.entries import CachedResponse, Entry
from app.caching.keys import CacheQuery, context_key, exact_key, normalize, scope_key
from app.caching.settings import CacheConfig

PREFIX = "llmgw-bench:rebuild"


class AcceptAll:
    """The probe measures the rebuild's hold on the event loop, not the verifier."""

    version, threshold = "bench", 0.5

    def accept(self, *args, **kwargs) -> bool:
        return True


def query(i: int, tenants: int, emb: np.ndarray | None = None) -> CacheQuery:
    text = f"seeded question {i}: " + "how would one configure the gateway for this case " * 2
    return CacheQuery(tenant=f"t{i % tenants}", model="auto", messages=[{"role": "user", "content": text}],
                      sampling={"max_tokens": 64, "temperature": 0.0}, embedding=emb)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(client: redis.Redis, n: int, tenants: int, embs: np.ndarray) -> float:
    t0 = time.perf_counter()
    answer = "The gateway reads its configuration from one YAML file; " * 5
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        q = query(i, tenants)
        entry = Entry(id=i + 1, tenant=q.tenant, scope=scope_key(q), context=context_key(q), exact=exact_key(q),
                      question=normalize(q.last_user_text()), embedding=embs[i],
                      response=CachedResponse(answer, "stop", 20, 64, "tiny-small", time.time()),
                      max_tokens=64, expires_at=time.time() + 3600)
        pipe.hset(f"{PREFIX}:e:{entry.id}", mapping=entry.to_redis())
        pipe.expire(f"{PREFIX}:e:{entry.id}", 3600)
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - t0


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def rebuild_with_probe(url: str, n: int, tenants: int, embs: np.ndarray) -> dict:
    cfg = CacheConfig(redis_url=url, key_prefix=PREFIX, max_entries=max(n, 100_000), max_bytes=4 << 30)
    cache = ResponseCache(cfg, verifier=AcceptAll())
    rng = np.random.default_rng(1)
    latencies, hits = [], 0
    holds: list[float] = []  # CPU time of each page insert: how long the event loop is held per page
    insert = cache._insert_rebuilt

    async def timed_insert(page):
        c0 = time.thread_time()
        loaded = await insert(page)
        holds.append(time.thread_time() - c0)
        return loaded

    cache._insert_rebuilt = timed_insert
    rss_before = rss_mb()
    t0, cpu0 = time.perf_counter(), time.process_time()
    task = cache.start_rebuild()
    k = 0
    while not task.done():
        i = int(rng.integers(n))
        near = embs[i] + 0.01 * rng.normal(size=384).astype(np.float32) if k % 2 else None
        probe = query(i, tenants, near) if near is not None else query(i, tenants)
        if near is not None:  # a paraphrase: different text, same context
            probe.messages = [{"role": "user", "content": f"paraphrase {i}"}]
        s = time.perf_counter()
        hit = await cache.lookup(probe)
        latencies.append((time.perf_counter() - s) * 1000)
        hits += hit is not None
        k += 1
        await asyncio.sleep(0.005)
    loaded = await task
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await cache.redis.close()
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {"entries": n, "loaded": loaded, "rebuild_s": round(seconds, 2), "rebuild_cpu_s": round(cpu, 2),
            "entries_per_s": round(loaded / seconds), "entries_per_cpu_s": round(loaded / cpu),
            "pages": len(holds), "page_hold_cpu_ms_p50": round(float(np.percentile(holds, 50)) * 1000, 1),
            "page_hold_cpu_ms_max": round(max(holds) * 1000, 1), "probes": len(latencies), "probe_hits": hits,
            "probe_ms_p50": round(float(np.percentile(lat, 50)), 2),
            "probe_ms_p99": round(float(np.percentile(lat, 99)), 2), "probe_ms_max": round(float(lat.max()), 2),
            "rss_mb_before": round(rss_before), "rss_mb_after": round(rss_mb()),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--port", type=int, default=6397)
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server on PATH")
    server = subprocess.Popen(["redis-server", "--port", str(args.port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=args.port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        embs = vectors(args.entries)
        fill_s = fill(client, args.entries, args.tenants, embs)
        used = client.info("memory")["used_memory"] / 2**20
        result = asyncio.run(rebuild_with_probe(f"redis://127.0.0.1:{args.port}/0", args.entries, args.tenants, embs))
        result.update(fill_s=round(fill_s, 1), redis_used_mb=round(used))
        print(json.dumps(result, indent=2))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
