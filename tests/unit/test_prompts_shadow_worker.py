"""Shadows off the served path: the ingress's ShadowForwarder hands tickets over in one call per batch, the
ShadowWorker (deployments/shadow.py, its process reniced) runs them on the shared registry and the real pool
class's ``generate_batch`` (echo engine). A failing, slow or hanging worker never touches the served answer."""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import time

import pytest

from app.config import GatewayConfig
from app.observability.request_log import iter_records
from app.pipeline.render_prompt import build_prompt_wiring
from app.prompts.shadow import InFlight
from app.prompts.shadow_worker import ShadowForwarder, forward_to_worker, renice_process, uses_worker
from tests.prompt_fixtures import REDIS_URL, redis_prefix, template
from tests.unit.test_pipeline import config, drain
from tests.unit.test_prompts_stage import REF, ctx, setup

SHADOW = {"name": "cand", "prompt": "support", "variants": [{"name": "control", "weight": 1}],
          "shadow": {"version": 2, "sample_rate": 1.0}}


class Handle:
    """A Serve handle's shape over a deployment's own object: ``handle.method.remote(*args)`` awaits the method."""

    def __init__(self, obj) -> None:
        self.obj = obj

    def __getattr__(self, name):
        method = getattr(self.obj, name)

        class Call:
            @staticmethod
            def remote(*args):
                args = pickle.loads(pickle.dumps(args))  # what crosses the process boundary must pickle
                return method(*args)

        return Call


@pytest.fixture()
def prefix():
    yield from redis_prefix()


def shared_config(prefix: str, tmp_path, **shadow) -> GatewayConfig:
    base = config().model_dump()
    base["pools"] = [{"name": n, "engine_kind": "echo", "engine": {"model": f"echo-{n}"}} for n in ("small", "large")]
    return GatewayConfig.model_validate({
        **base, "redis": {"url": REDIS_URL},
        "prompts": {"key_prefix": prefix, "shadow": {"worker_niceness": 0, "start_delay_s": 0.05, **shadow}},
        "observability": {"request_log": {"path": str(tmp_path / "req.jsonl")}}})


async def test_the_worker_runs_the_tickets_on_the_shared_registry_and_logs_beside_the_served(prefix, tmp_path):
    from deployments.pool import ModelPool
    from deployments.shadow import ShadowWorker

    cfg = shared_config(prefix, tmp_path)
    assert uses_worker(cfg)
    ingress = build_prompt_wiring(cfg)  # the ingress's registry and experiments, on Redis
    await ingress.registry.create("acme", "support", template(), labels=["production"])
    await ingress.registry.create("acme", "support", template("v2 for {{ customer }} / {{ product }}"))
    await ingress.experiments.start("acme", SHADOW)
    pool = ModelPool.func_or_class(cfg.pools[0].model_dump())
    worker = ShadowWorker.func_or_class(cfg.model_dump(), {"small": Handle(pool), "large": Handle(pool)})
    calls: list[int] = []

    async def send(tickets):
        calls.append(len(tickets))
        return await Handle(worker).run.remote(tickets)

    pipe, _, _, _, outcome, _ = await setup()
    render = next(s for s in pipe.stages if s.name == "render_prompt")
    render.registry, render.experiments = ingress.registry, ingress.experiments
    outcome.experiments, outcome.registry = ingress.experiments, ingress.registry
    outcome.shadow = ShadowForwarder(send, start_delay_s=0.05)
    served = [ctx(REF) for _ in range(3)]
    for c in served:
        assert await drain(pipe, c) == "w w w "  # the served answer, whatever the shadow does
    assert calls == []  # nothing handed over before the start delay
    await outcome.shadow.wait()
    assert calls == [3]  # one hand-over for the batch
    await worker.runner.wait()
    assert worker.runner.counts == {"ok": 3}
    stats = (await ingress.experiments.status("acme", "cand"))["variants"]
    assert stats["shadow"]["requests"] == 3  # the worker's records, seen by the ingress's registry
    assert worker.runner.request_log.flush()
    rows = {r.request_id: r for r in iter_records(str(tmp_path / "req.jsonl"), tenant="acme")}
    for c in served:
        row = rows[f"{c.request_id}-shadow"]
        assert row.path == "shadow" and row.evaluation["shadow"]["of"] == c.request_id
        assert row.messages[0]["content"] == "v2 for Ann / Ray"  # the candidate version, rendered by the worker
        assert "v2 for" not in c.text  # never returned
    worker.runner.request_log.close()


async def test_a_failing_or_hanging_worker_never_touches_the_served_answer(monkeypatch) -> None:
    from app.prompts import shadow_worker

    monkeypatch.setattr(shadow_worker, "HANDOFF_TIMEOUT_S", 2.0)  # a served answer waiting for it would take >= 2 s
    hang = asyncio.Event()

    async def failing(tickets):
        raise RuntimeError("worker is down")

    async def hanging(tickets):
        await hang.wait()

    for send, outcome_name in ((failing, "error"), (hanging, "error")):
        pipe, _, _, experiments, outcome, _ = await setup()
        await experiments.start("acme", SHADOW)
        outcome.shadow = forwarder = ShadowForwarder(send, start_delay_s=0.0)
        started = time.perf_counter()
        for _ in range(2):
            assert await drain(pipe, ctx(REF)) == "w w w "
        assert time.perf_counter() - started < 1.0  # the served answers did not wait for the hand-over
        await forwarder.wait()
        assert forwarder.counts == {outcome_name: 2} and forwarder.sending == 0


async def test_hand_over_waits_for_a_gap_and_is_bounded() -> None:
    sent: list[list] = []

    async def send(tickets):
        sent.append(tickets)

    pipe, _, _, experiments, outcome, _ = await setup()
    await experiments.start("acme", SHADOW)
    served = InFlight()
    outcome.shadow = forwarder = ShadowForwarder(send, start_delay_s=0.0, yield_max_s=0.2, served=served,
                                                 max_pending=2)
    served.enter()  # another served request in flight
    for _ in range(3):  # the third finds two batched: skipped
        await drain(pipe, ctx(REF))
    await asyncio.sleep(0.05)
    assert sent == [] and forwarder.counts == {"skipped_busy": 1}
    served.leave()
    await forwarder.wait()
    assert [len(b) for b in sent] == [2]
    served.enter()  # never idle: the batch is skipped
    await drain(pipe, ctx(REF))
    await forwarder.wait()
    assert [len(b) for b in sent] == [2] and forwarder.counts == {"skipped_busy": 2}
    served.leave()


def test_runner_choice_and_wiring(tmp_path) -> None:
    base = config()
    assert base.prompts.shadow.runner == "auto" and not uses_worker(base)  # no redis.url: on the ingress
    on_redis = GatewayConfig.model_validate({**base.model_dump(), "redis": {"url": REDIS_URL}})
    assert uses_worker(on_redis)
    ingress_only = GatewayConfig.model_validate({**on_redis.model_dump(), "prompts": {"shadow": {"runner": "ingress"}}})
    assert not uses_worker(ingress_only)
    worker_no_redis = GatewayConfig.model_validate({**base.model_dump(), "prompts": {"shadow": {"runner": "worker"}}})
    with pytest.raises(ValueError, match=r"needs redis\.url"):
        uses_worker(worker_no_redis)
    wiring = build_prompt_wiring(on_redis)
    forwarder = forward_to_worker(wiring, handle=None)
    assert wiring.shadow is forwarder and wiring.outcome.shadow is forwarder
    assert forwarder.served is wiring.render.inflight and forwarder.start_delay_s == 0.25


async def test_generate_batch_answers_each_request_with_its_own_latency_and_error() -> None:
    from app.generation import GenerationRequest, SamplingOptions
    from app.prompts.shadow_worker import PoolBatcher
    from deployments.pool import ModelPool

    pool = ModelPool.func_or_class({"name": "small", "engine_kind": "echo", "engine": {"model": "echo-small"}})
    batches: list[int] = []
    real = pool.generate_batch

    async def counting(reqs, carrier=None, priority=0):
        batches.append(len(reqs))
        return await real(reqs, carrier, priority)

    pool.generate_batch = counting
    batcher = PoolBatcher({"small": Handle(pool)})
    reqs = [GenerationRequest(f"r{i}", "small", messages=[{"role": "user", "content": f"hi {i}"}],
                              sampling=SamplingOptions(max_tokens=4)) for i in range(3)]
    results = await asyncio.gather(*(batcher(r) for r in reqs))
    assert batches == [3]  # one handle call for the three
    for chunk, latency_ms in results:
        assert chunk.text and latency_ms >= 0
    echo = pool.engine.stream

    def stream(req):
        if req.request_id == "bad":
            raise RuntimeError("the engine failed this one")
        return echo(req)

    pool.engine.stream = stream
    out = await real([reqs[0], GenerationRequest("bad", "small", messages=reqs[0].messages)])
    assert out[0][2] is None and out[0][0].text
    assert out[1][0] is None and out[1][2]  # only its own entry failed
    (low,) = await real([reqs[1]], None, 1)  # a priority on an engine without priority scheduling: ignored
    assert low[2] is None and low[0].text


def test_renice_lowers_every_thread_of_a_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import threading, time\n"
                              "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
                              "time.sleep(5)"])
    try:
        time.sleep(0.3)
        before = os.getpriority(os.PRIO_PROCESS, child.pid)
        renice_process(3, pid=child.pid)
        tids = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert len(tids) >= 2
        assert all(os.getpriority(os.PRIO_PROCESS, tid) == min(19, before + 3) for tid in tids)
    finally:
        child.kill()
        child.wait()


async def test_the_policy_store_builds_on_redis_inside_a_running_loop() -> None:
    """The ingress's constructor runs on Serve's loop (RAY_SERVE_THROUGHPUT_OPTIMIZED): with redis.url the policy's
    durability check used asyncio.run there and every ingress replica failed to start (found by the shadow bench)."""
    from app.policy.factory import build_policy

    cfg = GatewayConfig.model_validate({**config().model_dump(), "redis": {"url": REDIS_URL}})
    assert build_policy(cfg) is not None
