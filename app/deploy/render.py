"""Render the deploy files from ``cluster/profiles.yaml``: Serve configs, KubeRay RayService, launcher.

``render(target, profile)`` returns the text of one file; ``TARGETS`` says which committed file each
(target, profile) pair is (a unit test checks they do not drift). No Ray import: plain data out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.deploy.bind_args import split_pool_apps
from app.deploy.placement import placed_gateway
from app.deploy.profiles import PROFILES_PATH, Profile, load_profile

APP_NAME = "llm-gateway"
IMPORT_PATH = "app.graph:build_app"
PROM_DIR = "/tmp/llmgw-prom"  # PROMETHEUS_MULTIPROC_DIR on every node (fresh per node start)
NODE_EXPORTER_PORT = 9464

# (target, profile) -> committed file, relative to the repo root.
TARGETS: dict[tuple[str, str], str] = {
    ("serve", "cpu"): "serve_config.cpu.yaml",
    ("serve", "gpu"): "serve_config.yaml",
    ("kuberay", "gpu"): "cluster/kuberay/rayservice.yaml",
    ("launcher", "gpu"): "cluster/launcher/cluster.yaml",
}
TARGET_NAMES = ("serve", "kuberay", "launcher")


def serve_config(profile: Profile, http_port: int | None = None) -> dict[str, Any]:
    """A Serve config (``ServeDeploySchema`` shape) running the gateway with the profile's placement, as ONE
    application (the shape ``split_pool_apps`` starts from; what is committed is ``deploy_serve_config``)."""
    http = dict(profile.http_options)
    if http_port is not None:
        http["port"] = http_port
    config: dict[str, Any] = {"proxy_location": profile.proxy_location, "http_options": http}
    if profile.logging_config:
        config["logging_config"] = profile.logging_config
    app: dict[str, Any] = {"name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH}
    if profile.env_vars:
        app["runtime_env"] = {"env_vars": dict(profile.env_vars)}
    app["args"] = placed_gateway(profile)
    config["applications"] = [app]
    return config


def deploy_serve_config(profile: Profile, http_port: int | None = None, one_app: bool = False) -> dict[str, Any]:
    """The Serve config as committed and deployed: each pool its own application (``split_pool_apps``), so
    ``serve deploy`` with one pool's changed engine argument restarts that pool alone (docs/deploy.md
    section 9, docs/decisions.md). ``one_app``: everything in one application (any change restarts all)."""
    config = serve_config(profile, http_port)
    return config if one_app else split_pool_apps(config)


class _Dumper(yaml.SafeDumper):
    """Block style, except short all-scalar maps/lists (flow style), and multi-line strings as ``|``; no
    anchors (the per-pool applications share the runtime env and tracing: each app spells them out)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = bool(data) and all(_is_scalar(v) for v in data.values()) and len(repr(data)) <= 90
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = bool(data) and all(_is_scalar(v) and "\n" not in str(v) for v in data) and len(repr(data)) <= 90
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True)


def _header(profile: Profile, target: str, one_app: bool = False) -> str:
    lines = [f"# {line}" for line in _wrap(profile.description)]
    if target in ("serve", "kuberay"):
        lines.append("# Each pool is its own Serve application (llm-gateway-pool-<name>): a pool's engine change"
                     " restarts that pool alone." if not one_app else "# One Serve application (--one-app).")
    lines.append(f"# GENERATED from cluster/profiles.yaml (profile {profile.name}) by")
    flags = " --one-app" if one_app else ""
    lines.append(f"# `llmgw config render --target {target} --profile {profile.name}{flags}`: edit the profile "
                 "instead.")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 110) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def render_data(target: str, profile: Profile, http_port: int | None = None, one_app: bool = False) -> dict[str, Any]:
    if one_app and target != "serve":
        raise ValueError("--one-app applies to --target serve only")
    if target == "serve":
        return deploy_serve_config(profile, http_port, one_app)
    if target == "kuberay":
        from app.deploy.kuberay import rayservice

        return rayservice(profile)
    if target == "launcher":
        from app.deploy.launcher import launcher_config

        return launcher_config(profile)
    raise ValueError(f"unknown target {target!r} (known: {', '.join(TARGET_NAMES)})")


def render(target: str, profile: str | Profile = "gpu", profiles_path: Path = PROFILES_PATH,
           http_port: int | None = None, one_app: bool = False) -> str:
    """The text of one deploy file."""
    prof = profile if isinstance(profile, Profile) else load_profile(profile, profiles_path)
    if target != "serve" and not prof.node_groups:
        raise ValueError(f"profile {prof.name!r} has no node_groups: only --target serve renders it")
    return _header(prof, target, one_app) + dump_yaml(render_data(target, prof, http_port, one_app))


def render_all(root: Path, profiles_path: Path = PROFILES_PATH) -> list[Path]:
    """Write every committed deploy file under ``root``; return the paths written."""
    written = []
    for (target, profile), rel in TARGETS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(target, profile, profiles_path))
        written.append(path)
    return written
