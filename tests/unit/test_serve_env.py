"""The Serve switches the gateway runs with: set when absent, an explicit value wins, every node gets them."""

from __future__ import annotations

import os

from app.serve_env import (
    NODE_ENV,
    apply_serve_env,
    gateway_env_while_starting,
)


def test_defaults_fill_only_what_is_unset():
    env = {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    got = apply_serve_env(env)
    assert got == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "0",
                   "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000"}
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert "LLMGW_EMBED_BACKEND" not in env  # the offline tools' environment keeps full-precision vectors


def test_the_runtime_default_is_set_only_while_ray_starts(monkeypatch):
    monkeypatch.delenv("LLMGW_EMBED_BACKEND", raising=False)
    with gateway_env_while_starting() as got:
        assert os.environ["LLMGW_EMBED_BACKEND"] == "onnx-int8-prefilter" == got["LLMGW_EMBED_BACKEND"]
    assert "LLMGW_EMBED_BACKEND" not in os.environ  # the starting process keeps full-precision vectors
    monkeypatch.setenv("LLMGW_EMBED_BACKEND", "onnx")
    with gateway_env_while_starting() as got:
        assert got["LLMGW_EMBED_BACKEND"] == "onnx"
    assert os.environ["LLMGW_EMBED_BACKEND"] == "onnx"


def test_rendered_cluster_files_carry_the_switches():
    from tests.conftest import ROOT

    rayservice = (ROOT / "cluster/kuberay/rayservice.yaml").read_text()
    launcher = (ROOT / "cluster/launcher/cluster.yaml").read_text()
    for name, value in NODE_ENV.items():
        assert f"name: {name}" in rayservice and f"-e {name}={value}" in launcher


def test_every_kuberay_container_env_has_them():
    from app.deploy.kuberay import rayservice
    from app.deploy.profiles import load_profiles

    doc = rayservice(load_profiles()["gpu"])
    spec = doc["spec"]["rayClusterConfig"]
    pods = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for pod in pods:
        env = {e["name"]: e.get("value") for e in pod["template"]["spec"]["containers"][0]["env"]}
        assert all(env.get(k) == v for k, v in NODE_ENV.items())


def test_private_haproxy_ports_are_free_and_not_leaked(monkeypatch):
    import os
    import socket

    from app.serve_env import HAPROXY_PORT_ENVS, private_haproxy_ports

    for name in HAPROXY_PORT_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "18404")  # an explicit one is kept
    with private_haproxy_ports() as added:
        assert "RAY_SERVE_HAPROXY_STATS_PORT" not in added and "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT" in added
        port = int(os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"])
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # it was free
        assert os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    assert "RAY_SERVE_HAPROXY_METRICS_PORT" not in os.environ
