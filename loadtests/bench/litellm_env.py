"""LiteLLM proxy in its own virtualenv, in front of an upstream OpenAI-compatible server (benchmark only).

LiteLLM is never a project dependency: it lives in ``.cache/bench-venvs/litellm``, pinned to an exact
release (1.82.7 and 1.82.8 were malicious; the pin below predates them).

    python -m loadtests.bench.litellm_env            # create / verify the venv
    python -m loadtests.bench.litellm_env --serve --upstream http://127.0.0.1:8201 --port 8202
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache/bench-venvs/litellm"
LITELLM_VERSION = "1.81.16"
BAD_VERSIONS = frozenset({"1.82.7", "1.82.8"})
MASTER_KEY = "sk-bench-local"  # loopback-only benchmark proxy; not a secret


def venv_python() -> Path:
    return VENV / "bin" / "python"


def installed_version() -> str | None:
    """Version of litellm installed in the bench venv, or None."""
    if not venv_python().exists():
        return None
    out = subprocess.run([str(venv_python()), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_venv(version: str = LITELLM_VERSION) -> Path:
    """Create the venv and install ``litellm[proxy]==version`` unless already there; returns the venv python."""
    if version in BAD_VERSIONS:
        raise ValueError(f"litellm {version} is a known malicious release")
    if installed_version() == version:
        return venv_python()
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    f"litellm[proxy]=={version}"], check=True)
    got = installed_version()
    if got != version:
        raise RuntimeError(f"expected litellm {version} in {VENV}, found {got}")
    return venv_python()


def write_config(upstream: str, path: Path, model: str = "echo") -> Path:
    """A proxy config routing ``model`` to the upstream OpenAI-compatible server, logging and callbacks off."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "model_list:\n"
        f"  - model_name: {model}\n"
        "    litellm_params:\n"
        f"      model: openai/{model}\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: none\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
    )
    return path


def start_proxy(upstream: str, port: int, model: str = "echo", workers: int = 1) -> subprocess.Popen:
    """Start ``litellm --config`` on 127.0.0.1:port; caller waits with ``wait_ready`` and terminates it."""
    cfg = write_config(upstream, ROOT / ".cache/bench/litellm_config.yaml", model)
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "NO_DOCS": "True",
           "DISABLE_ADMIN_UI": "True", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("PYTHONPATH", None)
    cmd = [str(VENV / "bin" / "litellm"), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", str(workers)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_ready(url: str, timeout: float = 120, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``/health/liveliness`` (LiteLLM) or ``/v1/models`` until 200; False on timeout or exit."""
    deadline = time.time() + timeout
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        for path in ("/health/liveliness", "/v1/models"):
            try:
                if httpx.get(url + path, headers=headers, timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default=LITELLM_VERSION)
    parser.add_argument("--serve", action="store_true", help="also start the proxy until Ctrl-C")
    parser.add_argument("--upstream", default="http://127.0.0.1:8201")
    parser.add_argument("--port", type=int, default=8202)
    args = parser.parse_args()
    py = ensure_venv(args.version)
    print(f"litellm {installed_version()} ready in {py.parent.parent}")
    if args.serve:
        proc = start_proxy(args.upstream, args.port)
        try:
            print("ready" if wait_ready(f"http://127.0.0.1:{args.port}", proc=proc) else "proxy failed to start")
            proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
