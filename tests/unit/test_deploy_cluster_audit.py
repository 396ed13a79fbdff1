"""What issue 17 asks of the cluster files, checked on the committed renders: readiness on /readyz where the
gateway answers, the same min/max nodes per group on VMs as on KubeRay, secrets on VMs only fetched by the
nodes that read them (never inline), and the Ray metrics port on every pod beside the node exporter."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.deploy.render import NODE_EXPORTER_PORT

ROOT = Path(__file__).resolve().parents[2]


def _cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster/kuberay/rayservice.yaml").read_text())["spec"]["rayClusterConfig"]


def _launcher() -> dict:
    return yaml.safe_load((ROOT / "cluster/launcher/cluster.yaml").read_text())


def _groups() -> dict[str, dict]:
    cluster = _cluster()
    return {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def test_readiness_on_readyz_at_the_serve_port_of_the_pods_that_serve() -> None:
    spec = yaml.safe_load((ROOT / "cluster/kuberay/rayservice.yaml").read_text())["spec"]
    port = yaml.safe_load(spec["serveConfigV2"])["http_options"]["port"]
    probes = {name: g["template"]["spec"]["containers"][0].get("readinessProbe") for name, g in _groups().items()}
    assert spec["excludeHeadPodFromServeSvc"] is True  # the head serves no traffic: it needs no probe
    served = {name for name, probe in probes.items() if probe}
    assert served == {"cpu"}, probes  # the services group (ingress replicas); GPU pods serve no HTTP
    probe = probes["cpu"]
    assert probe["httpGet"] == {"path": "/readyz", "port": port}
    # /readyz waits up to 5 s on each pool's health check (deployments/ingress.py): the probe must outlast it
    assert probe["timeoutSeconds"] > 5 and probe["failureThreshold"] >= 2


def test_launcher_node_types_autoscale_within_the_kuberay_groups_bounds() -> None:
    launcher = _launcher()
    types = launcher["available_node_types"]
    workers = {name: g for name, g in _groups().items() if name != "head"}
    assert set(types) - {launcher["head_node_type"]} == set(workers)
    for name, group in workers.items():
        assert (types[name]["min_workers"], types[name]["max_workers"]) == (group["minReplicas"],
                                                                             group["maxReplicas"]), name
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
    assert launcher["max_workers"] == sum(g["maxReplicas"] for g in workers.values())
    assert _cluster()["autoscalerOptions"]["idleTimeoutSeconds"] == launcher["idle_timeout_minutes"] * 60


def test_launcher_secrets_come_from_secret_manager_on_the_nodes_that_read_them() -> None:
    launcher = _launcher()
    text = (ROOT / "cluster/launcher/cluster.yaml").read_text()
    fetch = "gcloud secrets versions access latest --secret=llmgw-secrets"
    for name, node in launcher["available_node_types"].items():
        fetched = any(fetch in c for c in node.get("initialization_commands", []))
        assert fetched is (not name.startswith("gpu")), name  # head and CPU nodes only; pools read none
    assert "--env-file /etc/llmgw/secrets.env" in launcher["docker"]["run_options"]
    assert not [o for o in launcher["docker"]["run_options"] if o.startswith("-e ") and "KEY" in o.upper()]
    assert "sk-" not in text and "redis://:" not in text  # no key, no password in the file


def test_every_pod_exposes_rays_metrics_and_the_node_exporter() -> None:
    for name, group in _groups().items():
        ray_c, sidecar = group["template"]["spec"]["containers"]
        assert {"containerPort": 8080, "name": "metrics"} in ray_c["ports"], name
        assert sidecar["ports"] == [{"containerPort": NODE_EXPORTER_PORT, "name": "llmgw-metrics"}], name
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):  # VMs: the same two endpoints
        commands = _launcher()[key]
        assert all("--metrics-export-port=8080" in c for c in commands if "ray start" in c), key
        assert any(f"app.observability.node_exporter --port {NODE_EXPORTER_PORT}" in c for c in commands), key


def test_models_come_read_only_from_the_volume_on_the_gpu_pods_only() -> None:
    from app.config import load_config

    cfg = load_config(ROOT / "serve_config.yaml")
    for name, group in _groups().items():
        pod = group["template"]["spec"]
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        if not name.startswith("gpu"):
            assert "models" not in mounts, name
            continue
        assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
        assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "llmgw-models", "readOnly": True}
    assert all(p.engine.model.startswith("/models/") for p in cfg.pools)


# docs/deploy.md section 7: weights per replica (GB) and fp16 KV cache per token (KiB) of each production model;
# activations / CUDA graphs per GPU (GB). A change of model or quantization must update that section and this.
WEIGHTS_GB = {("small", "fp8"): 8.5, ("large", "compressed-tensors"): 39.5}
KV_KIB_PER_TOKEN = {"small": 128, "large": 320}
OVERHEAD_GB_PER_GPU = {"small": 1.5, "large": 3.5}


def _kv_tokens(pool, gpu_gib: float, weights_gb: float | None = None) -> float:
    tp = pool.engine.tensor_parallel_size
    budget_gb = pool.engine.gpu_memory_utilization * gpu_gib * 2**30 / 1e9 * tp
    free_gb = budget_gb - (weights_gb if weights_gb is not None else WEIGHTS_GB[(pool.name, pool.engine.quantization)])
    free_gb -= OVERHEAD_GB_PER_GPU[pool.name] * tp
    return free_gb * 1e9 / (KV_KIB_PER_TOKEN[pool.name] * 1024)


def test_each_gpu_pool_fits_its_gpus_with_kv_cache_for_its_autoscaling_target() -> None:
    """The sizing of docs/deploy.md section 7 against the profile: weights fit, and the KV cache holds a full
    context and the autoscaling target's concurrency at 1k tokens each (8B bf16 on an L4 would not: FP8)."""
    from app.config import load_config
    from app.deploy.profiles import GPU_TYPES

    cfg = load_config(ROOT / "serve_config.yaml")
    for pool in cfg.pools:
        gpu = GPU_TYPES[pool.ray_actor_options["accelerator_type"]]
        tokens = _kv_tokens(pool, gpu.memory_gib)
        target = pool.autoscaling_config["target_ongoing_requests"]
        assert tokens >= pool.engine.max_model_len, (pool.name, tokens)
        assert tokens >= target * 1024, (pool.name, tokens, target)
        assert pool.max_ongoing_requests <= pool.engine.max_num_seqs  # the queue cap stays within a batch
    # the same 8B in bf16 (16.1 GB) on the L4 leaves KV for fewer than the target's 48 requests: what FP8 is for
    assert _kv_tokens(cfg.pool("small"), GPU_TYPES["L4"].memory_gib, weights_gb=16.1) < 48 * 1024
