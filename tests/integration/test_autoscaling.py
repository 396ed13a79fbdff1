"""A pool with max 2 replicas scales up under concurrent load and back down when idle (Serve status API)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from ray import serve
from ray.serve.schema import ReplicaState

from app.config import PoolConfig
from app.generation import GenerationRequest, SamplingOptions
from app.graph import _pool_app

pytestmark = pytest.mark.gateway
APP = "autoscale-test"
ROOT = Path(__file__).resolve().parents[2]


def _running_replicas() -> int:
    status = serve.status().applications[APP].deployments["pool-small"]
    return status.replica_states.get(ReplicaState.RUNNING, 0)


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(1)
    return False


def test_pool_scales_up_under_load_and_down_when_idle(gateway_url: str) -> None:
    pool = PoolConfig.model_validate(
        {
            "name": "small",
            "engine": {
                "model": str(ROOT / ".cache/models/tiny-small"),
                "max_model_len": 512,
                "dtype": "float32",
                "enforce_eager": True,
                "max_num_seqs": 8,
            },
            "env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
            "max_ongoing_requests": 4,
            "autoscaling_config": {
                "min_replicas": 1,
                "max_replicas": 2,
                "target_ongoing_requests": 1,
                "upscale_delay_s": 1,
                "downscale_delay_s": 4,
                "metrics_interval_s": 0.5,
                "look_back_period_s": 2,
            },
            "ray_actor_options": {"num_cpus": 1},
        }
    )
    handle = serve.run(_pool_app(pool), name=APP, route_prefix=None)
    try:
        assert _running_replicas() == 1
        stop = {"flag": False}

        async def load() -> int:
            done = 0

            async def worker(i: int) -> None:
                nonlocal done
                while not stop["flag"]:
                    req = GenerationRequest(
                        f"as-{i}-{done}", "small", prompt="load " * 8, sampling=SamplingOptions(max_tokens=64)
                    )
                    await handle.generate.remote(req)
                    done += 1

            tasks = [asyncio.create_task(worker(i)) for i in range(6)]
            scaled = await asyncio.to_thread(_wait_for, lambda: _running_replicas() == 2, 240)
            stop["flag"] = True
            await asyncio.gather(*tasks)
            assert scaled, "pool did not scale to 2 replicas under load"
            return done

        served = asyncio.run(load())
        assert served > 0
        assert _wait_for(lambda: _running_replicas() == 1, 120), "pool did not scale back down when idle"
    finally:
        serve.delete(APP)
