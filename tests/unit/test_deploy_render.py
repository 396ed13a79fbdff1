"""Deploy files: no drift from cluster/profiles.yaml, every Serve config a valid GatewayConfig and
ServeDeploySchema, the RayService valid against the vendored KubeRay CRD (unknown fields refused, as
the API server would silently prune them), the launcher config valid against Ray's own schema, and
the placement consistent: every resource a replica asks for is offered by a node group."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from app.config import REDIS_URL_ENV, load_config
from app.deploy.placement import (
    SERVICES_RESOURCE,
    pool_resource,
    required_secret_envs,
    secret_envs,
    surge_replicas,
)
from app.deploy.profiles import Profile, load_profile, load_profiles
from app.deploy.render import PROM_DIR, TARGETS, render, serve_config

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "cluster" / "kuberay" / "crd" / "ray.io_rayservices.yaml"


def _rayservice() -> dict:
    return yaml.safe_load((ROOT / "cluster/kuberay/rayservice.yaml").read_text())


def _serve_configs() -> dict[str, dict]:
    """Every committed Serve config, including the one embedded in the RayService."""
    configs = {rel: yaml.safe_load((ROOT / rel).read_text())
               for (target, _), rel in TARGETS.items() if target == "serve"}
    configs["rayservice.serveConfigV2"] = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    return configs


@pytest.mark.parametrize(("target", "profile"), sorted(TARGETS))
def test_committed_file_equals_its_rendering(target: str, profile: str) -> None:
    committed = (ROOT / TARGETS[(target, profile)]).read_text()
    assert committed == render(target, profile), (
        f"{TARGETS[(target, profile)]} drifted from cluster/profiles.yaml: run `llmgw config render --target all`")


@pytest.mark.parametrize("name", ["serve_config.cpu.yaml", "serve_config.yaml", "rayservice.serveConfigV2"])
def test_every_serve_config_is_a_gateway_config_and_a_serve_deploy_schema(name: str, tmp_path: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    data = _serve_configs()[name]
    ServeDeploySchema.model_validate(data)
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path, base_dir=ROOT)
    assert {p.name for p in cfg.pools} == {"small", "large"}
    assert data["applications"][0]["import_path"] == "app.graph:build_app"


def test_embedded_serve_config_is_the_gpu_serve_config() -> None:
    configs = _serve_configs()
    assert configs["rayservice.serveConfigV2"] == configs["serve_config.yaml"]


def test_production_config_has_redis_tracing_and_pools_on_their_gpus() -> None:
    cfg = load_config(ROOT / "serve_config.yaml")
    assert cfg.redis.url and cfg.cache.redis_url == cfg.redis.url
    assert cfg.observability.tracing.exporter == "otlp" and cfg.observability.tracing.otlp_endpoint
    large = cfg.pool("large").ray_actor_options
    assert large["num_gpus"] == cfg.pool("large").engine.tensor_parallel_size == 2
    assert large["accelerator_type"] == "A100-80G" and large["resources"] == {"pool_large": 1}
    assert cfg.pool("small").ray_actor_options["resources"] == {"pool_small": 1}


def test_replicas_write_metrics_where_every_node_creates_the_dir_and_the_exporter_reads() -> None:
    gpu = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]
    assert gpu["runtime_env"]["env_vars"]["PROMETHEUS_MULTIPROC_DIR"] == PROM_DIR
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        ray_c, sidecar = group["template"]["spec"]["containers"]
        assert {"name": "llmgw-prom", "mountPath": PROM_DIR} in ray_c["volumeMounts"]
        assert "PROMETHEUS_MULTIPROC_DIR" not in {e["name"] for e in ray_c["env"]}  # Ray's agents stay out
        assert sidecar["command"][:3] == ["python", "-m", "app.observability.node_exporter"]
        assert {"name": "PROMETHEUS_MULTIPROC_DIR", "value": PROM_DIR} in sidecar["env"]
    launcher = (ROOT / "cluster/launcher/cluster.yaml").read_text()
    assert f"rm -rf {PROM_DIR} && mkdir -p {PROM_DIR}" in launcher


def test_cpu_profile_fits_a_bare_ray_start_head_on_two_cpus() -> None:
    """`ray start --head` on this 2-core machine declares 2 CPUs: every replica must still be scheduled."""
    cfg = load_config(ROOT / "serve_config.cpu.yaml", base_dir=ROOT)
    asked = sum(p.ray_actor_options.get("num_cpus", 1) * p.autoscaling_config["max_replicas"] for p in cfg.pools)
    asked += cfg.ingress.ray_actor_options["num_cpus"] * cfg.ingress.num_replicas
    asked += cfg.router.ray_actor_options["num_cpus"] * cfg.router.num_replicas
    asked += cfg.cache.ray_actor_options["num_cpus"] + cfg.fallback.ray_actor_options["num_cpus"]
    asked += cfg.batch.ray_actor_options["num_cpus"] * cfg.batch.num_replicas
    assert asked <= 2


def test_redis_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REDIS_URL_ENV, "redis://:s3cret@redis.internal:6379/3")
    cfg = load_config(ROOT / "serve_config.yaml")
    assert cfg.redis.url == cfg.cache.redis_url == "redis://:s3cret@redis.internal:6379/3"
    monkeypatch.delenv(REDIS_URL_ENV)
    assert load_config(ROOT / "serve_config.cpu.yaml").cache.redis_url is None


# --- RayService against the KubeRay CRD -----------------------------------------------------------

def _closed(schema: dict) -> dict:
    """The CRD schema with unknown fields refused: the API server would silently drop a misspelt field."""
    schema = copy.deepcopy(schema)

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def _crd_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return _closed(version["schema"]["openAPIV3Schema"])


def test_rayservice_validates_against_the_vendored_crd() -> None:
    doc = _rayservice()
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayService")
    jsonschema.Draft7Validator(_crd_schema()).validate(doc)


def test_the_closed_crd_schema_catches_a_misspelt_field() -> None:
    doc = _rayservice()
    doc["spec"]["rayClusterConfig"]["enableInTreeAutoScaling"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(_crd_schema()).validate(doc)


_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")


def _valid_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return (len(name) <= 63 and bool(_LABEL_NAME.match(name))
            and (not prefix or re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", prefix) is not None))


def test_rayservice_passes_kuberay_operator_rules() -> None:
    """A port of the checks in kuberay ray-operator/controllers/ray/utils/validation.go we can hit."""
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    groups = [("head", cluster["headGroupSpec"]), *((g["groupName"], g) for g in cluster["workerGroupSpecs"])]
    for name, group in groups:
        assert "labels" not in group["rayStartParams"], name
        assert not ({"resources", "num-cpus", "num-gpus"} & set(group["rayStartParams"]) and "resources" in group)
        for key, value in group.get("labels", {}).items():
            assert _valid_label_key(key) and _LABEL_NAME.match(value), (name, key, value)
        containers = group["template"]["spec"]["containers"]
        assert containers[0]["name"].startswith("ray-"), "KubeRay reads the Ray container as containers[0]"
        env_names = {e["name"] for e in containers[0].get("env", [])}
        assert not env_names & {"RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_USERNAME"}  # would mean GCS FT
        resources = containers[0]["resources"]
        assert resources["requests"] == resources["limits"], name
    for group in cluster["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_secrets_only_by_reference_and_only_where_read() -> None:
    cfg = load_config(ROOT / "serve_config.yaml")
    secrets = set(secret_envs(cfg))
    assert {REDIS_URL_ENV, "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLMGW_ADMIN_KEY"} <= secrets
    assert {"LLMGW_WEBHOOK_SECRET", "LLMGW_CACHE_ENCRYPTION_KEY"} <= secrets  # every *_env field of the config
    text = (ROOT / "cluster/kuberay/rayservice.yaml").read_text()
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for container in group["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"] in secrets:
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert "value" not in env and ref["key"] == env["name"]
                    assert ref.get("optional", False) is (env["name"] not in required_secret_envs(cfg))
    gpu_env = {e["name"] for g in cluster["workerGroupSpecs"] if g["groupName"].startswith("gpu")
               for e in g["template"]["spec"]["containers"][0]["env"]}
    assert not gpu_env & secrets  # pools read no secret
    assert "s3cret" not in text and "sk-" not in text


def _offered(cluster: dict) -> dict[str, dict[str, float]]:
    """Ray resources each worker group's node offers (CPU/GPU from limits, custom from .resources)."""
    offered = {}
    for group in cluster["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        res = {"CPU": float(limits["cpu"]), "GPU": float(limits.get("nvidia.com/gpu", 0))}
        res.update({k: float(v) for k, v in group.get("resources", {}).items()})
        offered[group["groupName"]] = res
    return offered


def _asks(opts: dict) -> dict[str, float]:
    asks = {"CPU": float(opts.get("num_cpus", 1)), "GPU": float(opts.get("num_gpus", 0)), **opts.get("resources", {})}
    if opts.get("accelerator_type"):
        asks[f"accelerator_type:{opts['accelerator_type']}"] = 0.001  # Ray's accelerator_type request
    return asks


def test_every_replica_fits_exactly_the_group_meant_for_it() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    offered = _offered(cluster)
    cfg = load_config(ROOT / "serve_config.yaml")
    deployments = {f"pool-{p.name}": p.ray_actor_options for p in cfg.pools}
    deployments |= {s: getattr(cfg, s).ray_actor_options for s in ("ingress", "router", "cache", "fallback", "batch")}
    expected = {"pool-small": "gpu-small", "pool-large": "gpu-large"}
    for name, opts in deployments.items():
        fits = [g for g, res in offered.items() if all(res.get(k, 0) >= v for k, v in _asks(opts).items())]
        assert fits == [expected.get(name, "cpu")], (name, fits)
    assert offered["gpu-large"][pool_resource("large")] == 1  # 2 GPUs / tensor parallel 2
    assert SERVICES_RESOURCE not in offered["gpu-small"]


def test_gpu_groups_follow_the_pools_autoscaling_bounds() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    cfg = load_config(ROOT / "serve_config.yaml")
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    for pool, group in (("small", "gpu-small"), ("large", "gpu-large")):
        scaling = cfg.pool(pool).autoscaling_config
        surge = surge_replicas(cfg.pool(pool).max_surge_percent, scaling["max_replicas"])
        assert (groups[group]["minReplicas"], groups[group]["maxReplicas"]) == (
            scaling["min_replicas"], scaling["max_replicas"] + surge)  # one replica per node in both groups
    assert surge_replicas(25, 1) == surge_replicas(25, 4) == 1 and surge_replicas(25, 5) == 2  # Serve's ceiling
    assert surge_replicas(None, 4) == 0
    assert groups["gpu-large"]["maxReplicas"] == cfg.pool("large").autoscaling_config["max_replicas"] + 1


# --- launcher against Ray's own cluster-config schema ---------------------------------------------

def test_launcher_config_validates_against_rays_schema() -> None:
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    launcher = yaml.safe_load((ROOT / "cluster/launcher/cluster.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(launcher)
    kuberay = _offered(_rayservice()["spec"]["rayClusterConfig"])
    for name, node in launcher["available_node_types"].items():
        if name == launcher["head_node_type"]:
            assert node["resources"]["CPU"] == 0
            continue
        same = {k: float(v) for k, v in node["resources"].items()}
        assert same == {k: v for k, v in kuberay[name].items() if v or k != "GPU"}, name


# --- profiles and the CLI -------------------------------------------------------------------------

def test_profile_rejects_a_pool_that_does_not_fit_its_group() -> None:
    body = yaml.safe_load((ROOT / "cluster/profiles.yaml").read_text())["profiles"]["gpu"]
    body["gateway"]["pools"][1]["engine"]["tensor_parallel_size"] = 4
    with pytest.raises(ValueError, match="tensor_parallel_size 4"):
        Profile.model_validate({**body, "name": "gpu"})


def test_http_port_override_and_cli() -> None:
    assert serve_config(load_profile("cpu"), http_port=8123)["http_options"]["port"] == 8123
    from app.cli import cli

    result = CliRunner().invoke(cli, ["config", "render", "--target", "serve", "--profile", "cpu",
                                      "--http-port", "8123"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["http_options"]["port"] == 8123
    bad = CliRunner().invoke(cli, ["config", "render", "--target", "kuberay", "--profile", "cpu"])
    assert bad.exit_code != 0


def test_profiles_file_holds_both_profiles() -> None:
    assert set(load_profiles()) == {"cpu", "gpu"}


def test_pool_prices_follow_the_gpus_each_replica_holds() -> None:
    from app.deploy.profiles import GPU_TYPES
    from app.policy.factory import price_table
    from app.policy.prices import GPU_USD_PER_HOUR, amortised_price

    table = price_table(load_config(ROOT / "serve_config.yaml"))
    two_a100 = amortised_price(2 * GPU_USD_PER_HOUR["A100-80G"], 12_000, 700)  # tensor parallel 2
    assert table.price("large") == table.price("llama-3.1-70b-instruct-awq") == two_a100
    assert table.price("llama-3.1-8b-instruct") == amortised_price(GPU_USD_PER_HOUR["L4"], 40_000, 2_500)
    assert set(GPU_TYPES) <= set(GPU_USD_PER_HOUR)  # every GPU a profile may name has a price
