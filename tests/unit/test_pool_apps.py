"""Pools as their own Serve applications (app/deploy/bind_args.split_pool_apps, app.graph:build_pool_app):
Serve (2.60) versions every deployment of an application by one hash of the application's import path,
runtime env and args, so only a split config lets a pool's engine change restart that pool alone.
Checked with Ray's own ``get_app_code_version``."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from ray.serve._private.deploy_utils import get_app_code_version
from ray.serve.handle import DeploymentHandle
from ray.serve.schema import ServeDeploySchema

from app.deploy.bind_args import POOL_APPS_KEY, gateway_args, split_pool_apps
from app.deploy.profiles import load_profile
from app.deploy.render import serve_config
from app.graph import build_app, build_pool_app

ROOT = Path(__file__).resolve().parents[2]


def _base(batch: bool = False) -> dict:
    cfg = copy.deepcopy(serve_config(load_profile("cpu")))
    cfg["applications"][0]["args"].setdefault("batch", {})["enabled"] = batch
    return cfg


def _versions(serve_cfg: dict) -> dict[str, str]:
    schema = ServeDeploySchema.model_validate(serve_cfg)
    return {app.name: get_app_code_version(app) for app in schema.applications}


def _change(serve_cfg: dict, fn) -> dict:
    out = copy.deepcopy(serve_cfg)
    fn(next(p for p in out["applications"][0]["args"]["pools"] if p["name"] == "small"))
    return out


CHANGES = {
    "max_num_seqs": lambda p: p["engine"].update(max_num_seqs=p["engine"]["max_num_seqs"] // 2),
    "dtype": lambda p: p["engine"].update(dtype="bfloat16"),
    "extra_args": lambda p: p["engine"].update(extra_args={"enable_prefix_caching": False}),
    "env": lambda p: p.update(env={**p.get("env", {}), "VLLM_CPU_KVCACHE_SPACE": "2"}),
    "autoscaling": lambda p: p["autoscaling_config"].update(max_replicas=2),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_one_app_restarts_everything_split_restarts_only_the_pool(change: str) -> None:
    base = _base()
    changed = _change(base, CHANGES[change])
    whole_before, whole_after = _versions(base), _versions(changed)
    assert whole_before["llm-gateway"] != whole_after["llm-gateway"]  # one app: every deployment's version moves
    before, after = _versions(split_pool_apps(base)), _versions(split_pool_apps(changed))
    assert set(before) == {"llm-gateway", "llm-gateway-pool-small", "llm-gateway-pool-large"}
    assert {name for name in before if before[name] != after[name]} == {"llm-gateway-pool-small"}


def test_with_the_batch_lane_its_gate_sizes_stay_in_the_gateway() -> None:
    base = _base(batch=True)
    split = split_pool_apps(base)
    small = next(p for p in split["applications"][0]["args"]["pools"] if p["name"] == "small")
    assert small["engine"]["max_num_seqs"] == 64 and small["max_ongoing_requests"] == 64
    before, after = _versions(split), _versions(split_pool_apps(_change(base, CHANGES["max_num_seqs"])))
    assert {n for n in before if before[n] != after[n]} == {"llm-gateway", "llm-gateway-pool-small"}
    before, after = _versions(split), _versions(split_pool_apps(_change(base, CHANGES["dtype"])))
    assert {n for n in before if before[n] != after[n]} == {"llm-gateway-pool-small"}


def test_split_apps_build_and_reach_each_other() -> None:
    split = split_pool_apps(_base())
    gateway, *pools = split["applications"]
    assert gateway["route_prefix"] == "/" and all(a["route_prefix"] is None for a in pools)
    assert gateway["args"][POOL_APPS_KEY] == {"small": "llm-gateway-pool-small", "large": "llm-gateway-pool-large"}
    assert "autoscaling_config" not in gateway["args"]["pools"][0]
    ingress = build_app(gateway["args"])._bound_deployment
    handles = ingress.init_args[1]
    assert all(isinstance(h, DeploymentHandle) for h in handles.values())
    assert {(h.deployment_name, h.app_name) for h in handles.values()} == {
        ("pool-small", "llm-gateway-pool-small"), ("pool-large", "llm-gateway-pool-large")}
    pool = build_pool_app(pools[0]["args"])._bound_deployment
    assert pool.name == "pool-small"
    assert pool.init_args[0]["engine"]["max_num_seqs"] == 64
    assert pool._deployment_config.autoscaling_config.max_replicas == 1


def test_render_cli_splits_by_default_and_one_app_on_request() -> None:
    import yaml
    from typer.testing import CliRunner

    from app.deploy.cli import config_app

    out = CliRunner().invoke(config_app, ["--target", "serve", "--profile", "cpu"])
    assert out.exit_code == 0, out.output
    schema = ServeDeploySchema.model_validate(yaml.safe_load(out.output))
    assert [a.name for a in schema.applications] == ["llm-gateway", "llm-gateway-pool-small", "llm-gateway-pool-large"]
    one = CliRunner().invoke(config_app, ["--target", "serve", "--profile", "cpu", "--one-app"])
    assert one.exit_code == 0, one.output
    assert [a["name"] for a in yaml.safe_load(one.output)["applications"]] == ["llm-gateway"]
    refused = CliRunner().invoke(config_app, ["--target", "kuberay", "--one-app"])
    assert refused.exit_code != 0


COMMITTED = {"serve_config.cpu.yaml": "cpu", "serve_config.yaml": "gpu", "cluster/kuberay/rayservice.yaml": "gpu"}


def _committed_serve(rel: str) -> dict:
    import yaml

    data = yaml.safe_load((ROOT / rel).read_text())
    return yaml.safe_load(data["spec"]["serveConfigV2"]) if data.get("kind") == "RayService" else data


@pytest.mark.parametrize("rel", sorted(COMMITTED))
def test_committed_configs_are_split_and_join_back_to_the_whole_config(rel: str) -> None:
    """What users `serve deploy` (and KubeRay applies) has each pool as its own app; reading the file back
    (load_config, llmgw run) gives the whole GatewayConfig, every pool's engine and placement included."""
    data = _committed_serve(rel)
    gateway, *pools = data["applications"]
    assert [a["name"] for a in pools] == ["llm-gateway-pool-small", "llm-gateway-pool-large"]
    assert all(a["import_path"] == "app.graph:build_pool_app" and a["route_prefix"] is None for a in pools)
    assert all(a.get("runtime_env") == gateway.get("runtime_env") for a in pools)  # metrics dir, offline HF
    assert all("autoscaling_config" not in p for p in gateway["args"]["pools"])  # no engine tuning in the gateway
    assert gateway_args(data) == serve_config(load_profile(COMMITTED[rel]))["applications"][0]["args"]
    with pytest.raises(ValueError, match="already split"):
        split_pool_apps(data)


def test_a_split_config_naming_a_missing_pool_app_is_refused() -> None:
    split = split_pool_apps(_base())
    split["applications"] = split["applications"][:2]
    with pytest.raises(ValueError, match="llm-gateway-pool-large"):
        gateway_args(split)


def test_max_surge_percent_reaches_the_pool_deployment_only() -> None:
    split = split_pool_apps(_change(_base(), lambda p: p.update(max_surge_percent=100)))
    small = build_pool_app(split["applications"][1]["args"])._bound_deployment
    large = build_pool_app(split["applications"][2]["args"])._bound_deployment
    assert small._deployment_config.max_surge_percent == 100 and large._deployment_config.max_surge_percent == 0
    assert "max_surge_percent" not in split["applications"][0]["args"]["pools"][0]


def test_the_large_pools_surge_is_rendered_into_its_own_deployment_and_validated() -> None:
    """The production large pool (one replica) surges on a restart: the committed config carries it to the
    pool's Serve deployment (Serve's own schema accepts it), not to the gateway; out-of-range values fail."""
    from app.config import PoolConfig

    data = _committed_serve("serve_config.yaml")
    ServeDeploySchema.model_validate(data)
    gateway, small, large = data["applications"]
    assert large["args"]["pool"]["max_surge_percent"] == 25 and "max_surge_percent" not in small["args"]["pool"]
    assert build_pool_app(large["args"])._bound_deployment._deployment_config.max_surge_percent == 25
    assert build_pool_app(small["args"])._bound_deployment._deployment_config.max_surge_percent == 0
    assert all("max_surge_percent" not in p for p in gateway["args"]["pools"])
    one_app = build_app(gateway_args(data))._bound_deployment.init_args[1]  # the one-application layout too
    assert one_app["large"]._bound_deployment._deployment_config.max_surge_percent == 25
    for bad in (-1, 101):
        with pytest.raises(ValueError, match="max_surge_percent"):
            PoolConfig.model_validate({**large["args"]["pool"], "max_surge_percent": bad})
