"""The echo upstream and the open-loop load generator, against a real echo server on loopback."""

from __future__ import annotations

import asyncio
import json
import random
import socket

import pytest
import yaml

from loadtests.bench import echo_server, litellm_env
from loadtests.bench.load import run_fixed_rps, unique_prompt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def echo_url():
    port = free_port()
    proc = echo_server.start(port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_echo_completion_truncates_to_max_tokens() -> None:
    body = {"model": "echo", "max_tokens": 2, "messages": [{"role": "user", "content": "a b c d"}]}
    out = echo_server.completion(body, chat=True)
    assert out["choices"][0]["message"]["content"] == "a b"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 2


def test_echo_stream_has_usage_then_done() -> None:
    body = {"prompt": "x y z", "stream": True, "stream_options": {"include_usage": True}}
    events = echo_server.stream_events(body, chat=False)
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == "x y z"
    assert chunks[-1]["usage"]["completion_tokens"] == 3 and chunks[-1]["choices"] == []


def test_fixed_rps_sends_the_schedule_without_errors(echo_url: str) -> None:
    res = asyncio.run(run_fixed_rps(echo_url, rps=40, duration=1.0, warmup=2))
    assert res.sent == 40 and res.errors == 0 and len(res.latencies) == 40
    summary = res.summary()
    assert summary["statuses"] == {200: 40}
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]


def test_fixed_rps_streaming_measures_ttft(echo_url: str) -> None:
    res = asyncio.run(run_fixed_rps(echo_url, rps=20, duration=1.0, stream=True, warmup=1))
    assert res.errors == 0 and len(res.ttfts) == 20
    assert res.summary()["ttft_p50_ms"] <= res.summary()["p50_ms"]


def test_fixed_rps_counts_errors(echo_url: str) -> None:
    bad = asyncio.run(run_fixed_rps(echo_url, rps=10, duration=0.5, path="/v1/nope", warmup=0))
    assert bad.errors == bad.sent == 5 and bad.statuses == {404: 5}
    refused = asyncio.run(run_fixed_rps(f"http://127.0.0.1:{free_port()}", rps=10, duration=0.3, warmup=0))
    assert refused.errors == refused.sent == 3 and not refused.latencies


def test_unique_prompts_differ() -> None:
    rng = random.Random(0)
    assert len({unique_prompt(rng) for _ in range(100)}) == 100


def test_litellm_config_points_at_upstream(tmp_path) -> None:
    cfg = yaml.safe_load(litellm_env.write_config("http://127.0.0.1:9", tmp_path / "c.yaml").read_text())
    params = cfg["model_list"][0]["litellm_params"]
    assert params["api_base"] == "http://127.0.0.1:9/v1" and params["model"] == "openai/echo"


@pytest.mark.parametrize("version", sorted(litellm_env.BAD_VERSIONS))
def test_litellm_refuses_malicious_versions(version: str) -> None:
    with pytest.raises(ValueError):
        litellm_env.ensure_venv(version)
    assert litellm_env.LITELLM_VERSION not in litellm_env.BAD_VERSIONS
