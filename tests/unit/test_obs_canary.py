"""Canaries against a real local HTTP server: checks, metrics, deviation events, CLI exit codes, recording."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time

import pytest
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from app.observability.canary import record_expected, run_canaries
from app.observability.cli import canary_app, load_canary_settings
from app.observability.metrics import CANARY_DEVIATION, CANARY_RUNS
from app.observability.settings import CanaryCheck, CanaryConfig

SEEN_AUTH: list[str | None] = []


async def chat(request: Request) -> JSONResponse:
    body = await request.json()
    SEEN_AUTH.append(request.headers.get("authorization"))
    if body.get("delay"):
        await asyncio.sleep(body["delay"])
    words = " ".join(m["content"] for m in body["messages"])[::-1]  # deterministic "model"
    choice = {"message": {"role": "assistant", "content": words}}
    return JSONResponse({"object": "chat.completion", "choices": [choice]},
                        headers={"x-llmgw-route": "small", "x-llmgw-cache": "miss", "x-llmgw-trace-id": "ab" * 16})


async def broken(_: Request) -> JSONResponse:
    return JSONResponse({"error": {"message": "nope"}}, status_code=503)


@pytest.fixture(scope="module")
def server_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            Route("/broken", broken, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def _canary(name: str, checks: list[dict], path: str = "/v1/chat/completions", **body) -> CanaryConfig:
    body = {"model": "auto", "messages": [{"role": "user", "content": "abc"}], "temperature": 0, "seed": 1, **body}
    return CanaryConfig(name=name, path=path, body=body, checks=[CanaryCheck(**c) for c in checks])


def _runs(name: str, result: str) -> float:
    return CANARY_RUNS.labels(name, result)._value.get()


async def test_passing_and_deviating_canaries(server_url, caplog) -> None:
    good = _canary("good", [{"kind": "status", "value": 200}, {"kind": "exact", "value": "cba"},
                            {"kind": "regex", "value": "^c"}, {"kind": "contains", "value": "b"},
                            {"kind": "header", "name": "x-llmgw-route", "value": "small|large"},
                            {"kind": "json_path", "field": "choices.0.message.role"},
                            {"kind": "max_latency_ms", "value": 5000}])
    bad = _canary("drifted", [{"kind": "exact", "value": "recorded answer"},
                              {"kind": "header", "name": "x-llmgw-cache", "value": "hit-.*"}])
    slow = _canary("slow", [{"kind": "max_latency_ms", "value": 50}], delay=0.2)
    down = _canary("down", [{"kind": "status", "value": 200}], path="/broken")
    before = {n: (_runs(n, "ok"), _runs(n, "deviation")) for n in ("good", "drifted", "slow", "down")}
    with caplog.at_level(logging.WARNING, logger="llmgw.canary"):
        results = await run_canaries(server_url, [good, bad, slow, down], timeout_s=5)
    by_name = {r.name: r for r in results}
    assert by_name["good"].ok and by_name["good"].answer == "cba" and by_name["good"].trace_id == "ab" * 16
    assert by_name["good"].headers["x-llmgw-route"] == "small"
    assert not by_name["drifted"].ok and len(by_name["drifted"].failures) == 2
    assert not by_name["slow"].ok and "latency" in by_name["slow"].failures[0]
    assert not by_name["down"].ok and by_name["down"].status == 503
    assert _runs("good", "ok") - before["good"][0] == 1
    for name in ("drifted", "slow", "down"):
        assert _runs(name, "deviation") - before[name][1] == 1
        assert CANARY_DEVIATION.labels(name)._value.get() == 1
    assert CANARY_DEVIATION.labels("good")._value.get() == 0
    events = [json.loads(r.getMessage().split(" ", 1)[1]) for r in caplog.records]
    assert {e["canary"] for e in events} == {"drifted", "slow", "down"}
    assert all(e["event"] == "canary_deviation" for e in events)
    assert "cba" not in caplog.text  # deviation events describe, they do not dump answers


async def test_unreachable_gateway_is_an_error_result() -> None:
    before = _runs("nowhere", "error")
    (result,) = await run_canaries("http://127.0.0.1:1", [_canary("nowhere", [])], timeout_s=2)
    assert not result.ok and result.status is None and "ConnectError" in result.failures[0]
    assert _runs("nowhere", "error") - before == 1


async def test_api_key_from_env_and_record_expected(server_url, monkeypatch) -> None:
    monkeypatch.setenv("CANARY_TEST_KEY", "sk-canary-secret")
    canary = _canary("keyed", [{"kind": "exact", "value": "old"}], messages=[{"role": "user", "content": "xyz"}])
    canary = canary.model_copy(update={"api_key_env": "CANARY_TEST_KEY"})
    results = await run_canaries(server_url, [canary])
    assert SEEN_AUTH[-1] == "Bearer sk-canary-secret"
    assert "sk-canary-secret" not in json.dumps(results[0].to_dict())
    (pinned,) = record_expected(results, [canary])
    assert [(c.kind, c.value) for c in pinned.checks] == [("exact", "zyx")]
    assert (await run_canaries(server_url, [pinned]))[0].ok


def test_cli_run_exit_codes_and_record(server_url, tmp_path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"observability": {"canary": {"canaries": [
        _canary("a", [{"kind": "status", "value": 200}]).model_dump(),
        _canary("b", [{"kind": "exact", "value": "wrong"}]).model_dump(),
    ]}}}))
    runner = CliRunner()
    ok = runner.invoke(canary_app, ["run", "--url", server_url, "--config", str(config), "--name", "a"])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output
    recorded = tmp_path / "pinned.yaml"
    failed = runner.invoke(canary_app, ["run", "--url", server_url, "--config", str(config), "--json",
                                        "--record", str(recorded)])
    assert failed.exit_code == 1
    lines = [json.loads(line) for line in failed.output.splitlines() if line.startswith("{")]
    assert [(r["name"], r["ok"]) for r in lines] == [("a", True), ("b", False)]
    pinned = load_canary_settings(recorded)
    again = runner.invoke(canary_app, ["run", "--url", server_url, "--config", str(recorded)])
    assert again.exit_code == 0, again.output
    assert pinned.canaries[1].checks[-1].value == "cba"
