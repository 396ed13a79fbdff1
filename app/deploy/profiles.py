"""Deploy profiles (``cluster/profiles.yaml``): a GatewayConfig plus the cluster it runs on.

A profile holds the Serve-level options (proxy, HTTP, env), the gateway's ``GatewayConfig`` args,
and for clusters the node groups and which group each pool (and the CPU services) is placed on.
Pure data and checks; :mod:`app.deploy.render` turns a profile into the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.config import GatewayConfig

ROOT = Path(__file__).resolve().parents[2]
PROFILES_PATH = ROOT / "cluster" / "profiles.yaml"


@dataclass(frozen=True, slots=True)
class GpuType:
    """A GPU model as Ray (``accelerator_type``) and Kubernetes (NVIDIA GPU feature discovery) name it."""

    ray_type: str
    memory_gib: int
    k8s_product: str  # node label nvidia.com/gpu.product


# Ray auto-detects "L4", "A100", "H100"; the "-80G" sizes are declared by the node group itself.
GPU_TYPES: dict[str, GpuType] = {
    "L4": GpuType("L4", 24, "NVIDIA-L4"),
    "L40S": GpuType("L40S", 48, "NVIDIA-L40S"),
    "A100-80G": GpuType("A100-80G", 80, "NVIDIA-A100-SXM4-80GB"),
    "H100": GpuType("H100", 80, "NVIDIA-H100-80GB-HBM3"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeGroup(_Strict):
    """One node type: a KubeRay head/worker group and a launcher ``available_node_types`` entry."""

    name: str
    head: bool = False
    cpus: int  # logical CPUs Ray schedules with (container limit on Kubernetes)
    memory_gib: int
    gpu: str | None = None  # a GPU_TYPES key
    gpus: int = 0
    gcp_machine_type: str
    min_workers: int | None = None  # GPU groups: derived from the placed pool's autoscaling
    max_workers: int | None = None
    shm_gib: int = 0  # /dev/shm for NCCL / vLLM workers

    @model_validator(mode="after")
    def _check(self) -> NodeGroup:
        if (self.gpu is None) != (self.gpus == 0):
            raise ValueError(f"node group {self.name}: gpu and gpus go together")
        if self.gpu is not None and self.gpu not in GPU_TYPES:
            raise ValueError(f"node group {self.name}: unknown gpu {self.gpu!r} (known: {sorted(GPU_TYPES)})")
        return self

    @property
    def gpu_type(self) -> GpuType | None:
        return GPU_TYPES[self.gpu] if self.gpu else None


class Placement(_Strict):
    services: str | None = None  # node group of ingress, router, cache, fallback
    pools: dict[str, str] = Field(default_factory=dict)  # pool name -> node group


class ModelsVolume(_Strict):
    mount_path: str = "/models"
    pvc: str  # Kubernetes PersistentVolumeClaim (ReadOnlyMany)
    gcp_disk: str  # VMs: a disk attached read-only


class Profile(_Strict):
    name: str = ""
    description: str
    proxy_location: str = "HeadOnly"
    http_options: dict[str, Any] = Field(default_factory=dict)
    logging_config: dict[str, Any] | None = None
    env_vars: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    app_dir: str | None = None
    secret_name: str | None = None
    models: ModelsVolume | None = None
    gateway: dict[str, Any]
    placement: Placement | None = None
    node_groups: list[NodeGroup] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Profile:
        cfg = GatewayConfig.model_validate(self.gateway)
        groups = {g.name: g for g in self.node_groups}
        if self.node_groups and sum(g.head for g in self.node_groups) != 1:
            raise ValueError(f"profile {self.name}: exactly one head node group")
        if self.placement is None:
            return self
        if self.placement.services and self.placement.services not in groups:
            raise ValueError(f"placement.services: no node group {self.placement.services!r}")
        for pool_name, group_name in self.placement.pools.items():
            group = groups.get(group_name)
            if group is None or group.gpu is None:
                raise ValueError(f"placement.pools.{pool_name}: {group_name!r} is not a GPU node group")
            pool = next((p for p in cfg.pools if p.name == pool_name), None)
            if pool is None:
                raise ValueError(f"placement.pools: no pool {pool_name!r}")
            tp = pool.engine.tensor_parallel_size
            if group.gpus % tp:
                raise ValueError(f"pool {pool_name}: tensor_parallel_size {tp} does not divide {group.gpus} GPUs")
            if "num_gpus" in pool.ray_actor_options or "resources" in pool.ray_actor_options:
                raise ValueError(f"pool {pool_name}: num_gpus/resources come from placement, not the profile")
        return self

    def group(self, name: str) -> NodeGroup:
        return next(g for g in self.node_groups if g.name == name)

    def gateway_config(self) -> GatewayConfig:
        return GatewayConfig.model_validate(self.gateway)


def load_profiles(path: Path = PROFILES_PATH) -> dict[str, Profile]:
    data = yaml.safe_load(Path(path).read_text())
    return {name: Profile.model_validate({**body, "name": name}) for name, body in data["profiles"].items()}


def load_profile(name: str, path: Path = PROFILES_PATH) -> Profile:
    profiles = load_profiles(path)
    if name not in profiles:
        raise KeyError(f"no profile {name!r} in {path} (have: {sorted(profiles)})")
    return profiles[name]
