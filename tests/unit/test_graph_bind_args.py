"""Each deployment is bound with only the config it reads: a pool's engine-only tuning reaches that pool
alone, so the ingress, router and cache bind args are byte-identical across such a change (app/deploy/bind_args.py)."""

from __future__ import annotations

import copy
import pickle

import pytest

from app.config import GatewayConfig
from app.deploy.bind_args import ingress_args
from app.deploy.profiles import load_profile
from app.deploy.render import serve_config
from app.graph import build_graph


def _gateway_args() -> dict:
    return copy.deepcopy(serve_config(load_profile("cpu"))["applications"][0]["args"])


def _bind_args(cfg: GatewayConfig) -> dict[str, bytes]:
    """Every deployment's init args (other deployments replaced by their names), pickled."""
    def plain(value):
        if hasattr(value, "_bound_deployment"):
            return f"<{value._bound_deployment.name}>"
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    out: dict[str, bytes] = {}

    def walk(app) -> None:
        dep = app._bound_deployment
        args = dep.init_args
        out[dep.name] = pickle.dumps(([plain(a) for a in args], plain(dict(dep.init_kwargs))))
        for a in args:
            for child in (a.values() if isinstance(a, dict) else [a]):
                if hasattr(child, "_bound_deployment") and child._bound_deployment.name not in out:
                    walk(child)

    walk(build_graph(cfg))
    return out


def _changed(args: dict, **engine) -> dict:
    args = copy.deepcopy(args)
    small = next(p for p in args["pools"] if p["name"] == "small")
    small["engine"].update(engine)
    small["autoscaling_config"]["max_replicas"] = 3
    small["env"] = {**small.get("env", {}), "VLLM_CPU_KVCACHE_SPACE": "2"}
    return args


@pytest.mark.parametrize("engine", [{"max_num_seqs": 32}, {"dtype": "float32", "enforce_eager": False},
                                    {"extra_args": {"enable_prefix_caching": True}}])
def test_engine_only_change_reaches_only_its_pool(engine: dict) -> None:
    base = _gateway_args()
    before = _bind_args(GatewayConfig.model_validate(base))
    after = _bind_args(GatewayConfig.model_validate(_changed(base, **engine)))
    assert {"Ingress", "Router", "pool-small", "pool-large"} <= set(before)
    assert set(before) == set(after)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"pool-small"}


def test_ingress_keeps_what_the_request_path_reads() -> None:
    base = _gateway_args()
    small = next(p for p in base["pools"] if p["name"] == "small")
    small.update(aliases=["tiny"], tool_parser="mistral")
    small["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 1, "accelerator_type": "L4"}
    full = GatewayConfig.model_validate(base)
    view = GatewayConfig.model_validate(ingress_args(full))
    assert view.model_names() == full.model_names()
    for a, b in zip(view.pools, full.pools, strict=True):
        assert (a.name, a.aliases, a.tool_parser, a.engine_kind) == (b.name, b.aliases, b.tool_parser, b.engine_kind)
        assert (a.engine.model, a.engine.name, a.engine.max_model_len) == (b.engine.model, b.engine.name,
                                                                            b.engine.max_model_len)
    assert view.pool("small").ray_actor_options == {"num_gpus": 1, "accelerator_type": "L4"}
    # every section but the pools is the ingress's unchanged
    assert {k: v for k, v in view.model_dump().items() if k != "pools"} == \
        {k: v for k, v in full.model_dump().items() if k != "pools"}


def test_a_served_name_change_does_reach_the_ingress() -> None:
    base = _gateway_args()
    before = _bind_args(GatewayConfig.model_validate(base))
    after = _bind_args(GatewayConfig.model_validate(_changed(base, served_model_name="renamed")))
    assert before["Ingress"] != after["Ingress"] and before["pool-small"] != after["pool-small"]
