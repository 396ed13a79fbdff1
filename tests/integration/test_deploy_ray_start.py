"""The one-VM recipe, for real: `ray start --head` (own port and temp dir, the machine's 2 CPUs) and
`serve deploy` of the rendered CPU config (as committed: each pool its own application) bring the gateway
up; it answers; `serve status` shows every deployment HEALTHY; `serve shutdown` removes it and stopping the
node leaves no process behind."""

from __future__ import annotations

import pytest
import yaml

from app.deploy.profiles import load_profile
from app.deploy.render import deploy_serve_config
from loadtests.local_cluster import LocalCluster, ask, free_port

pytestmark = pytest.mark.slow


def test_ray_start_head_and_serve_deploy_cpu_config() -> None:
    from app.cli import ensure_tiny_models

    ensure_tiny_models()
    port = free_port()
    cluster = LocalCluster()
    try:
        cluster.start_head()  # no --num-cpus: what `ray start --head` counts here (2 on this machine)
        config = deploy_serve_config(load_profile("cpu"), http_port=port)
        names = [app["name"] for app in config["applications"]]
        assert names == ["llm-gateway", "llm-gateway-pool-small", "llm-gateway-pool-large"]
        path = cluster.temp_dir / "serve_config.cpu.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        cluster.deploy(path)
        deployments = {d for name in names for d in cluster.wait_healthy(app=name, timeout=420)["deployments"]}
        assert deployments >= {"Ingress", "Router", "CacheDeployment", "pool-small", "pool-large"}

        url = f"http://127.0.0.1:{port}"
        for model, pool in (("small", "small"), ("large", "large")):
            resp = ask(url, model=model)
            assert resp.status_code == 200, resp.text
            assert resp.headers["x-llmgw-path"] == f"pool:{pool}"
            assert resp.json()["choices"][0]["message"]["role"] == "assistant"
        assert ask(url, model="auto").status_code == 200

        cluster.serve("shutdown", "-y")
        apps = cluster.status().get("applications", {})
        assert all(n not in apps or apps[n]["status"] in {"DELETING", "NOT_STARTED"} for n in names), apps
    finally:
        leftovers = cluster.shutdown(describe=True)
        cluster.cleanup()
    assert leftovers == [], f"processes outlived their node: {leftovers}"
