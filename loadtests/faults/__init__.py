"""Fault figures under steady load (issue 14): run by hand, numbers go to docs/reliability.md.

    python -m loadtests.faults [--engine vllm|echo] [--rate 4] [--window 45] [--phases all|a,b,...]
    python -m loadtests.faults --soak 1800 [--rate 4]

Takes /tmp/llmgw-graph.lock (it starts Ray and the whole Serve graph), then starts, on loopback only:
a private redis-server on --redis-port (``--save '' --appendonly no``; never the machine's Redis), the
fake OpenAI provider (tests/fakes/provider_server.py, a real HTTP server) and the gateway on --port
(tests/gateway_test_config.yaml with that Redis and that provider; ``--engine echo`` swaps the tiny
vLLM pools for the instant echo engine). A steady open-loop load (httpx, --rate requests/s, at most
--max-in-flight at once; half streamed, half cacheable repeats) runs through every phase, one after
another (one module each under ``loadtests/faults/phases/``):

* ``pool_replica``   the small pool's replica is killed (Serve restarts it);
* ``cache_replica``  the cache replica is killed;
* ``redis_outage``   the private redis-server is stopped for 30 s, then started again;
* ``provider_faults`` both pools are kept down and the provider answers 500, then 429, then hangs past
                     its timeout, then breaks its streams (one sub-phase each);
* ``oversized_body`` 20 MB bodies (Content-Length, chunked, raw socket): the 413 or a reset? (issue 14 #2);
* ``disconnect_storm`` 64 streams are opened and dropped by the client after their first chunk.

Per phase: requests sent, answered (a complete 200, or an error status with an OpenAI-shaped JSON
error, or an SSE error event), errors by status/code, requests lost (no answer at all, or a 200 stream
cut without an error event; target 0), degraded answers by path, time to recover (fault start ->
the last failed or non-pool answer of the phase), and the breaker transitions the gauge showed.
``--soak`` runs the same load without faults and reports the RSS of every gateway process (Ray
workers, Serve proxy/controller/replicas, vLLM engine cores) at the start and the end, and the error
count per 5-minute window. Prints one JSON document and a markdown table.

Modules: ``load`` (the load generator and its accounting), ``system`` (the system under test: Redis,
config, replicas, RSS), ``runner`` (the phase sequence, the report, ``main``), ``phases/*``.
"""

from loadtests.faults.load import Breakers, Load, Outcome, _judge, summarize

__all__ = ["Breakers", "Load", "Outcome", "_judge", "summarize"]
