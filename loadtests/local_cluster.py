"""A real Ray cluster on this machine from the CLI: `ray start --head` + `ray start --address` workers.

Every node is a `ray start --block` process of our own (own ports, own --temp-dir), so stopping a
node is a signal to our process, never `ray stop` (which would stop every Ray on the machine).
Used by tests/integration/test_deploy_*.py and loadtests/rolling_update.py. The caller holds
/tmp/llmgw-graph.lock when running by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.serve_env import NODE_ENV

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


_PORTS = range(20000, 32000)  # below Linux's ephemeral range (outgoing connections) and above Ray's worker ports


def free_port() -> int:
    """A port that binds now, outside the ranges the OS and Ray hand out on their own: a port taken from the
    ephemeral range can be given to an outgoing connection before the process meant for it binds (seen: a
    head's client server failed with "Address already in use")."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.choice(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # everything tried was taken: the OS's pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Head + workers as `ray start --block` subprocesses; Serve CLI against the head's dashboard."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.temp_dir = Path(tempfile.mkdtemp(prefix="lgw-", dir="/tmp"))  # short: Ray's socket paths
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.nodes: dict[str, subprocess.Popen] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        env.update(PYTHONPATH=str(root), RAY_AUTH_MODE="token", RAY_worker_niceness="0",
                   VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   RAY_USAGE_STATS_ENABLED="0", LLMGW_LOCAL_CLUSTER=str(self.temp_dir),
                   RAY_AUTH_TOKEN=secrets.token_hex(32))  # own token: no reliance on ~/.ray/auth_token
        for name, value in NODE_ENV.items():  # what a real node's environment carries, unless set here
            env.setdefault(name, value)
        self.env = env

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, args: list[str], num_cpus: int | None, resources: dict[str, float] | None) -> None:
        cmd = [str(BIN / "ray"), "start", "--block", "--temp-dir", str(self.temp_dir), "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port()),
               *args]
        if num_cpus is not None:
            cmd += ["--num-cpus", str(num_cpus)]
        if resources:
            cmd += ["--resources", json.dumps(resources)]
        log = open(self.temp_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.nodes[name] = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def start_head(self, num_cpus: int | None = None, resources: dict[str, float] | None = None,
                   timeout: float = 120, attempts: int = 2) -> None:
        """Start the head; a head whose port was taken meanwhile ("already in use") starts again on new ports."""
        for attempt in range(1, attempts + 1):
            self._start("head", ["--head", "--port", str(self.gcs_port), "--dashboard-port",
                                 str(self.dashboard_port), "--ray-client-server-port", str(free_port()),
                                 "--include-dashboard", "true"], num_cpus, resources)
            try:
                return self._head_up(timeout)
            except RuntimeError as exc:
                if attempt == attempts or "already in use" not in str(exc):
                    raise
                warnings.warn("ray start head lost a port to another process; starting it again", stacklevel=2)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.nodes.pop("head").pid, signal.SIGKILL)
                time.sleep(5)
                self.gcs_port, self.dashboard_port = free_port(), free_port()

    def _head_up(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._check_alive("head")
            if self.serve("status", check=False).returncode == 0:
                return
            time.sleep(2)
        raise TimeoutError(f"head did not come up; see {self.temp_dir}/head.log")

    def add_node(self, name: str, num_cpus: int, resources: dict[str, float] | None = None,
                 timeout: float = 90, attempts: int = 2) -> str:
        """Start a worker node; return its Ray node id once it is alive.

        ``ray start`` gives a raylet 30 s (fixed in Ray) to register with the GCS; on a loaded machine it can
        miss that and exit. Then its process group is stopped and the node started again (``attempts`` in all).
        """
        for attempt in range(1, attempts + 1):
            before = {n["node_id"] for n in self.list_nodes()}
            self._start(name, ["--address", f"127.0.0.1:{self.gcs_port}"], num_cpus, resources)
            try:
                return self._joined(name, before, timeout)
            except RuntimeError as exc:
                if attempt == attempts or "timed out during startup" not in str(exc):
                    raise
                warnings.warn(f"ray start {name} timed out registering with the GCS; starting it again", stacklevel=2)
                with contextlib.suppress(ProcessLookupError):  # its raylet may outlive the exited `ray start`
                    os.killpg(self.nodes.pop(name).pid, signal.SIGTERM)
                time.sleep(5)
        raise AssertionError("unreachable")

    def _joined(self, name: str, before: set[str], timeout: float) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._check_alive(name)
            new = [n for n in self.list_nodes() if n["node_id"] not in before and n["state"] == "ALIVE"]
            if new:
                return new[0]["node_id"]
            time.sleep(2)
        raise TimeoutError(f"node {name} did not join; see {self.temp_dir}/{name}.log")

    def stop_node(self, name: str, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        proc = self.nodes.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def _check_alive(self, name: str) -> None:
        if self.nodes[name].poll() is not None:
            log = (self.temp_dir / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"ray start {name} exited {self.nodes[name].returncode}:\n{log}")

    # --- Serve CLI and state API -------------------------------------------------------------------

    def serve(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(BIN / "serve"), *args, "-a", self.dashboard]
        return subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def deploy(self, config: dict[str, Any] | Path) -> None:
        path = config if isinstance(config, Path) else self.temp_dir / f"serve-{time.time_ns()}.yaml"
        if not isinstance(config, Path):
            path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.serve("deploy", str(path))

    def status(self) -> dict[str, Any]:
        return yaml.safe_load(self.serve("status").stdout) or {}

    def wait_healthy(self, app: str = "llm-gateway", timeout: float = 420) -> dict[str, Any]:
        """Wait until the app is RUNNING with every deployment HEALTHY; return its status."""
        deadline, last = time.time() + timeout, {}
        while time.time() < deadline:
            self._check_alive("head")
            last = self.status().get("applications", {}).get(app, {})
            deployments = last.get("deployments", {})
            if last.get("status") == "RUNNING" and deployments and all(
                    d.get("status") == "HEALTHY" for d in deployments.values()):
                return last
            if last.get("status") == "DEPLOY_FAILED":
                raise RuntimeError(f"deploy failed: {last.get('message')}")
            time.sleep(3)
        raise TimeoutError(f"{app} not healthy in {timeout}s: {last}")

    def state(self, kind: str, *filters: str) -> list[dict[str, Any]]:
        cmd = [str(BIN / "ray"), "list", kind, "--format", "json", "--limit", "10000", "--address", self.dashboard]
        for f in filters:
            cmd += ["--filter", f]
        out = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, check=True, timeout=60)
        return json.loads(out.stdout)

    def list_nodes(self) -> list[dict[str, Any]]:
        return self.state("nodes")

    def replica_nodes(self, deployment: str, app: str = "llm-gateway") -> set[str]:
        """Node ids of the ALIVE replica actors of one deployment."""
        actors = self.state("actors", "state=ALIVE")
        prefix = f"SERVE_REPLICA::{app}#{deployment}#"
        return {a["node_id"] for a in actors if (a.get("name") or "").startswith(prefix)}

    # --- teardown ------------------------------------------------------------------------------------

    def leftover_pids(self) -> list[int]:
        """Processes still running that belong to this cluster: our temp dir in their command line or
        environment (Ray workers retitle themselves, but inherit LLMGW_LOCAL_CLUSTER)."""
        marker, pids = str(self.temp_dir).encode(), []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
                except OSError:
                    continue
                if marker in seen:
                    pids.append(int(entry.name))
        return pids

    def shutdown(self, timeout: float = 60, describe: bool = False) -> list:
        """Stop every node (workers first), then, as `ray stop` does, signal what of this cluster is left;
        return the pids that only SIGKILL stopped (with ``describe``: "pid (state, ppid, sid) command line").

        Stragglers of the first round (alive ``timeout`` s after their node stopped) are named in a warning
        (pytest's summary shows it), so a slow exit is visible without failing the caller."""
        for name in [n for n in self.nodes if n != "head"] + (["head"] if "head" in self.nodes else []):
            self.stop_node(name)
        left = self._wait_gone(timeout)
        if left:
            warnings.warn(f"processes alive {timeout:.0f}s after their node stopped (sent SIGTERM): "
                          f"{[_describe(pid) for pid in left]}", stacklevel=2)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            left = self._wait_gone(20)
        described = [_describe(pid) for pid in left]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return described if describe else left

    def _wait_gone(self, timeout: float) -> list[int]:
        deadline = time.time() + timeout
        while (left := self.leftover_pids()) and time.time() < deadline:
            time.sleep(1)
        return left

    def cleanup(self) -> None:
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _describe(pid: int) -> str:
    """"pid (state, parent pid, session) command line" for a failure message."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        return f"{pid} (state {stat[0]}, ppid {stat[1]}, sid {stat[3]}) {cmd}"
    except (OSError, IndexError):
        return str(pid)


def ask(url: str, model: str = "small", content: str = "hello", max_tokens: int = 8, timeout: float = 60,
        stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "cache": False, "stream": stream}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)
