"""KubeRay ``RayService`` (ray.io/v1) for a profile: head, CPU services group, one GPU group per pool.

Every pod runs the Ray container first (KubeRay and its autoscaler read ``containers[0]``) and a
``metrics`` sidecar serving the node's merged ``PROMETHEUS_MULTIPROC_DIR`` (shared emptyDir).
Secrets reach the head and CPU pods only, as ``env.valueFrom.secretKeyRef``; never inline.
"""

from __future__ import annotations

from typing import Any

from app.deploy.placement import (
    group_bounds,
    group_labels,
    group_resources,
    required_secret_envs,
    secret_envs,
    services_group,
)
from app.deploy.profiles import NodeGroup, Profile
from app.deploy.render import APP_NAME, NODE_EXPORTER_PORT, PROM_DIR, deploy_serve_config, dump_yaml
from app.serve_env import NODE_ENV

RAY_VERSION = "2.60.0"
KUBERAY_VERSION = "1.7.0"  # the CRD vendored under cluster/kuberay/crd/


def _env(profile: Profile, group: NodeGroup) -> list[dict[str, Any]]:
    # Not PROMETHEUS_MULTIPROC_DIR: Ray's own agents use prometheus_client too. The replicas get it from
    # the Serve runtime_env; here the emptyDir only makes the (fresh, per-pod) directory exist.
    env: list[dict[str, Any]] = [{"name": "PYTHONPATH", "value": profile.app_dir or "/opt/llm-gateway"}]
    env += [{"name": k, "value": v} for k, v in NODE_ENV.items()]  # every node, before `ray start`
    if group.head or services_group(profile, group):
        cfg = profile.gateway_config()
        required = required_secret_envs(cfg)
        for name in secret_envs(cfg):
            ref = {"name": profile.secret_name, "key": name}
            if name not in required:
                ref["optional"] = True
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return env


def _resources(group: NodeGroup) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": str(group.cpus), "memory": f"{group.memory_gib}Gi"}
    if group.gpus:
        amounts["nvidia.com/gpu"] = str(group.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _ports(group: NodeGroup) -> list[dict[str, Any]]:
    ports = [{"containerPort": 8000, "name": "serve"}, {"containerPort": 8080, "name": "metrics"}]
    if group.head:
        ports += [{"containerPort": 6379, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
                  {"containerPort": 10001, "name": "client"}]
    return ports


def _ray_container(profile: Profile, group: NodeGroup) -> dict[str, Any]:
    mounts = [{"name": "llmgw-prom", "mountPath": PROM_DIR}]
    if group.gpus and profile.models:
        mounts.append({"name": "models", "mountPath": profile.models.mount_path, "readOnly": True})
    if group.shm_gib:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    container: dict[str, Any] = {
        "name": "ray-head" if group.head else "ray-worker",
        "image": profile.image,
        "env": _env(profile, group),
        "ports": _ports(group),
        "resources": _resources(group),
        "volumeMounts": mounts,
    }
    if services_group(profile, group):
        # The gateway is ready when a pool or a provider can answer (deployments/ingress.py /readyz).
        container["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": 8000},
            "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 6, "failureThreshold": 3,
        }
    return container


def _metrics_sidecar(profile: Profile) -> dict[str, Any]:
    return {
        "name": "metrics",
        "image": profile.image,
        "command": ["python", "-m", "app.observability.node_exporter", "--port", str(NODE_EXPORTER_PORT)],
        "env": [{"name": "PROMETHEUS_MULTIPROC_DIR", "value": PROM_DIR},
                {"name": "PYTHONPATH", "value": profile.app_dir or "/opt/llm-gateway"}],
        "ports": [{"containerPort": NODE_EXPORTER_PORT, "name": "llmgw-metrics"}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        "volumeMounts": [{"name": "llmgw-prom", "mountPath": PROM_DIR, "readOnly": True}],
    }


def _pod_template(profile: Profile, group: NodeGroup) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [{"name": "llmgw-prom", "emptyDir": {}}]
    if group.gpus and profile.models:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": profile.models.pvc,
                                                                    "readOnly": True}})
    if group.shm_gib:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{group.shm_gib}Gi"}})
    spec: dict[str, Any] = {"containers": [_ray_container(profile, group), _metrics_sidecar(profile)],
                            "volumes": volumes}
    if group.gpu_type is not None:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": group.gpu_type.k8s_product}
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    labels = {"app.kubernetes.io/name": APP_NAME, "llmgw.io/node-group": group.name}
    return {"metadata": {"labels": labels}, "spec": spec}


def _string_map(values: dict[str, int]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items()}


def _worker_group(profile: Profile, group: NodeGroup) -> dict[str, Any]:
    low, high = group_bounds(profile, group)
    spec: dict[str, Any] = {"groupName": group.name, "replicas": low, "minReplicas": low, "maxReplicas": high,
                            "rayStartParams": {}}
    if resources := group_resources(profile, group):
        spec["resources"] = _string_map(resources)
    if labels := group_labels(profile, group):
        spec["labels"] = labels
    spec["template"] = _pod_template(profile, group)
    return spec


def rayservice(profile: Profile) -> dict[str, Any]:
    head = next(g for g in profile.node_groups if g.head)
    # Replicas never run on the head (num-cpus 0): only the Serve controller and a proxy do.
    head_spec = {"rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                 "template": _pod_template(profile, head)}
    cluster = {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "version": "v2", "upscalingMode": "Default", "idleTimeoutSeconds": 300,
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        },
        "authOptions": {"mode": "token"},  # Ray 2.60 default; KubeRay makes and mounts the token Secret
        "headGroupSpec": head_spec,
        "workerGroupSpecs": [_worker_group(profile, g) for g in profile.node_groups if not g.head],
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": APP_NAME, "labels": {"app.kubernetes.io/name": APP_NAME}},
        "spec": {
            # A change to rayClusterConfig brings up a new cluster and moves traffic once it serves;
            # a change to serveConfigV2 alone is applied in place (Serve rolls the changed deployments).
            "upgradeStrategy": {"type": "NewCluster"},
            "excludeHeadPodFromServeSvc": True,
            "serveConfigV2": dump_yaml(deploy_serve_config(profile)),
            "rayClusterConfig": cluster,
        },
    }
