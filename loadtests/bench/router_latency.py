"""Router added latency per request: embedding + classifier, alone and under concurrent load.

    python -m loadtests.bench.router_latency [--requests 300] [--concurrency 16]

Part 1 times the policy in-process (embedding on CPU + numpy classifier). Part 2 calls the real
Router Serve deployment (with @serve.batch) through a handle, one at a time and with N concurrent
callers, which is what the ingress pays per `model: auto` request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

PROMPTS = [
    "What is the capital of France?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Which of the following is a renewable energy source?\nA. Wood\nB. Oil\nC. Natural gas\nD. Coal\nAnswer:",
    "Explain the difference between a process and a thread in an operating system.",
    "Write a haiku about autumn.",
    "Prove that the square root of 2 is irrational.",
]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def bench_inprocess(n: int, threads: int) -> None:
    import torch

    from app.embedding import get_embedder
    from app.routing.classifier import RouterClassifier

    torch.set_num_threads(threads)
    emb, clf = get_embedder(), RouterClassifier.load()
    for i in range(10):  # warm up
        emb.encode_one(PROMPTS[i % len(PROMPTS)])
    t_emb, t_clf = [], []
    for i in range(n):
        text = PROMPTS[i % len(PROMPTS)] + f" #{i}"
        t0 = time.perf_counter()
        v = emb.encode_one(text)
        t1 = time.perf_counter()
        clf.score(text, v)
        t_clf.append(time.perf_counter() - t1)
        t_emb.append(t1 - t0)
    print(f"in-process  torch threads={threads} embedding p50={pct(t_emb, 50):.2f} ms p99={pct(t_emb, 99):.2f} ms | "
          f"classifier p50={pct(t_clf, 50):.3f} ms p99={pct(t_clf, 99):.3f} ms")


async def _through_handle(handle, n: int, concurrency: int) -> list[float]:
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            await handle.analyze.remote(PROMPTS[i % len(PROMPTS)] + f" #{i}")
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(i) for i in range(n)))
    return lat


async def _repeated(handle, n: int) -> list[float]:
    """The same prompt again and again (a repeated question / cache hit): served from the router's memo."""
    lat: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        await handle.analyze.remote(PROMPTS[0])
        lat.append(time.perf_counter() - t0)
    return lat


def bench_deployment(n: int, concurrency: int) -> None:
    import ray
    from ray import serve

    from app.config import RouterConfig
    from deployments.router import Router

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)  # never attach elsewhere
    handle = serve.run(Router.bind(RouterConfig().model_dump()), name="router-bench", route_prefix=None)
    asyncio.run(_through_handle(handle, 20, 1))  # warm up
    alone = asyncio.run(_through_handle(handle, n, 1))
    t0 = time.perf_counter()
    loaded = asyncio.run(_through_handle(handle, n, concurrency))
    rate = n / (time.perf_counter() - t0)
    memo = asyncio.run(_repeated(handle, n))
    print(f"deployment  repeated text (embedding memo) p50={pct(memo, 50):.2f} ms p99={pct(memo, 99):.2f} ms")
    print(f"deployment  alone        p50={pct(alone, 50):.2f} ms p99={pct(alone, 99):.2f} ms")
    print(f"deployment  concurrency={concurrency:<3} p50={pct(loaded, 50):.2f} ms p99={pct(loaded, 99):.2f} ms "
          f"({rate:.0f} req/s; ratio p50 loaded/alone {statistics.median(loaded) / statistics.median(alone):.2f})")
    serve.shutdown()
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    from app.embedding import embed_threads

    for threads in sorted({embed_threads(), 2}):  # what the Router uses (1), and 2 for comparison
        bench_inprocess(args.requests, threads)
    bench_deployment(args.requests, args.concurrency)


if __name__ == "__main__":
    main()
