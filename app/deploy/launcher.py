"""Ray cluster launcher config (``ray up``) for GCP VMs with the same node types as the RayService.

Nodes run the same image as on Kubernetes (docker). The autoscaler passes each node type's
``resources`` / ``labels`` to ``ray start`` (RAY_OVERRIDE_RESOURCES / _LABELS), so the pools'
custom resources exist exactly where they do on KubeRay. Secrets come from GCP Secret Manager into
an env file on the host (head and CPU nodes only); models from a disk attached read-only.
"""

from __future__ import annotations

from typing import Any

from app.deploy.placement import group_bounds, group_labels, group_resources, services_group
from app.deploy.profiles import NodeGroup, Profile
from app.deploy.render import APP_NAME, NODE_EXPORTER_PORT, PROM_DIR
from app.serve_env import NODE_ENV

REGION, ZONE = "us-central1", "us-central1-a"
PROJECT = "YOUR_GCP_PROJECT"
BOOT_IMAGE = "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570"
SECRETS_FILE = "/etc/llmgw/secrets.env"

_PROM = f"rm -rf {PROM_DIR} && mkdir -p {PROM_DIR}"
_EXPORTER = (f"nohup env PROMETHEUS_MULTIPROC_DIR={PROM_DIR} python -m app.observability.node_exporter "
             f"--port {NODE_EXPORTER_PORT} > /tmp/llmgw-node-exporter.log 2>&1 &")


def _node_config(profile: Profile, group: NodeGroup) -> dict[str, Any]:
    disks: list[dict[str, Any]] = [{"boot": True, "autoDelete": True, "type": "PERSISTENT",
                                    "initializeParams": {"diskSizeGb": 200, "sourceImage": BOOT_IMAGE}}]
    if group.gpus and profile.models:
        disks.append({"boot": False, "autoDelete": False, "mode": "READ_ONLY", "deviceName": profile.models.gcp_disk,
                      "source": f"projects/{PROJECT}/zones/{ZONE}/disks/{profile.models.gcp_disk}"})
    config: dict[str, Any] = {"machineType": group.gcp_machine_type, "disks": disks}
    if group.gpus:
        config["scheduling"] = [{"onHostMaintenance": "TERMINATE"}]  # GPU VMs cannot live-migrate
    return config


def _init_commands(profile: Profile, group: NodeGroup) -> list[str]:
    """Run on the host before docker: secrets env file, model disk mount."""
    commands = [f"sudo mkdir -p {SECRETS_FILE.rsplit('/', 1)[0]} && sudo touch {SECRETS_FILE}"]
    if group.head or services_group(profile, group):
        commands.append(f"gcloud secrets versions access latest --secret={profile.secret_name} "
                        f"| sudo tee {SECRETS_FILE} > /dev/null")
    if group.gpus and profile.models:
        mount = profile.models.mount_path
        commands.append(f"sudo mkdir -p {mount} && (mountpoint -q {mount} || sudo mount -o ro,noload "
                        f"/dev/disk/by-id/google-{profile.models.gcp_disk} {mount})")
    return commands


def _node_type(profile: Profile, group: NodeGroup) -> dict[str, Any]:
    resources: dict[str, int] = {"CPU": 0 if group.head else group.cpus}
    if group.gpus:
        resources["GPU"] = group.gpus
    resources.update(group_resources(profile, group))
    node: dict[str, Any] = {"node_config": _node_config(profile, group), "resources": resources}
    if labels := group_labels(profile, group):
        node["labels"] = labels
    if not group.head:
        node["min_workers"], node["max_workers"] = group_bounds(profile, group)
    node["initialization_commands"] = _init_commands(profile, group)
    if group.shm_gib:
        node["docker"] = {"worker_run_options": [f"--shm-size={group.shm_gib}g"]}
    return node


def launcher_config(profile: Profile) -> dict[str, Any]:
    head = next(g for g in profile.node_groups if g.head)
    workers = [g for g in profile.node_groups if not g.head]
    mount = profile.models.mount_path if profile.models else "/models"
    return {
        "cluster_name": APP_NAME,
        "max_workers": sum(group_bounds(profile, g)[1] for g in workers),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "provider": {"type": "gcp", "region": REGION, "availability_zone": ZONE, "project_id": PROJECT},
        "auth": {"ssh_user": "ubuntu"},
        "docker": {
            "image": profile.image,
            "container_name": "llmgw",
            "pull_before_run": True,
            "run_options": ["--ulimit nofile=65536:65536", f"--env-file {SECRETS_FILE}", f"-v {mount}:{mount}:ro",
                            f"-e PYTHONPATH={profile.app_dir}", *(f"-e {k}={v}" for k, v in NODE_ENV.items())],
        },
        "head_node_type": head.name,
        "available_node_types": {g.name: _node_type(profile, g) for g in profile.node_groups},
        "setup_commands": [],
        "head_start_ray_commands": [
            "ray stop", _PROM,
            "ulimit -n 65536; ray start --head --port=6379 --dashboard-host=0.0.0.0 --metrics-export-port=8080 "
            "--autoscaling-config=~/ray_bootstrap_config.yaml",
            _EXPORTER,
        ],
        "worker_start_ray_commands": [
            "ray stop", _PROM,
            "ulimit -n 65536; ray start --address=$RAY_HEAD_IP:6379 --metrics-export-port=8080",
            _EXPORTER,
        ],
    }
