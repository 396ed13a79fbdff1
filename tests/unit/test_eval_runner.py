"""`llmgw eval` end to end over HTTP against the gateway's own api + pipeline (render_prompt wired, in-process
pools as in test_pipeline) with the judge served by the local fake provider; baseline regressions."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time

import pytest
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from typer.testing import CliRunner

from app.api.completions import complete
from app.cli import cli
from app.evaluation.runner import compare
from app.pipeline.render_prompt import build_prompt_wiring
from tests.fakes.provider_server import FakeProvider
from tests.prompt_fixtures import template
from tests.unit.test_pipeline import config, make

KEY_ENV = "LLMGW_TEST_JUDGE_KEY"


@pytest.fixture(scope="module")
def gateway():
    cfg = config()
    pipe, pools, _ = make(cfg=cfg)
    wiring = build_prompt_wiring(cfg)
    # the pipeline's own prompt stage and finisher, on this test's registry
    pipe.stages = [wiring.render if s.name == "render_prompt" else s for s in pipe.stages]
    pipe.finishers = [wiring.outcome if f.name == "prompt_outcome" else f for f in pipe.finishers]
    asyncio.run(wiring.registry.create("acme", "qa", template(), labels=["production"]))

    async def chat(request: Request):
        return await complete(pipe, request, "chat", 1 << 20)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", pools
    server.should_exit = True
    thread.join(5)


@pytest.fixture()
def judge_file(tmp_path):
    os.environ[KEY_ENV] = "sk-judge-test"
    fake = FakeProvider().start()
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump({"evaluation": {"judge": {"provider": {
        "name": "judge", "kind": "openai", "base_url": f"{fake.url}/v1", "model": "fake-judge",
        "api_key_env": KEY_ENV, "timeout_s": 5}, "criteria": ["correctness"]}}}))
    yield path, fake
    fake.stop()


SUITE = {"name": "qa", "model": "small", "judge": {"min_score": 0.5}, "cases": [
    {"id": "ok", "variables": {"customer": "Ann", "product": "Ray"},
     "messages": [{"role": "user", "content": "hi"}], "expect": {"contains": "w w", "regex": "^w"}},
    {"id": "json", "variables": {"customer": "Ann", "product": "Ray"},
     "messages": [{"role": "user", "content": "as JSON"}], "expect": {"json_schema": {"type": "object"}},
     "judge": False},
    {"id": "missing-var", "variables": {"customer": "Ann"}, "messages": [{"role": "user", "content": "x"}]},
]}


def test_eval_scores_a_suite_and_flags_regressions(gateway, judge_file, tmp_path) -> None:
    url, pools = gateway
    path, fake = judge_file
    suite, out = tmp_path / "suite.yaml", tmp_path / "report.json"
    suite.write_text(yaml.safe_dump(SUITE))
    args = ["eval", str(suite), "--prompt", "qa@production", "--url", url, "--tenant", "acme",
            "--judge-config", str(path), "--out", str(out)]
    fake.judge_score = 5
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    cases = {c["id"]: c for c in report["cases"]}
    assert cases["ok"]["passed"] and cases["ok"]["judge"]["scores"] == {"correctness": 5}
    assert cases["ok"]["prompt"] == "qa@1" and cases["ok"]["answer"] == "w w w "
    assert not cases["json"]["passed"] and cases["json"]["failures"] == ["json_schema: the answer is not JSON"]
    assert cases["missing-var"]["status"] == 400 and "Missing prompt variables: product" in \
        cases["missing-var"]["failures"][0]
    assert report["summary"]["pass_rate"] == pytest.approx(1 / 3, abs=1e-4)
    # the gateway got the template's messages before the client's (3 requests; the 400 never reached a pool)
    assert len(pools.calls) == 2
    baseline = tmp_path / "baseline.json"
    baseline.write_text(out.read_text())
    fake.judge_score = 2  # the judge now scores 0.25 < min_score 0.5: "ok" regresses
    worse = CliRunner().invoke(cli, [*args, "--baseline", str(baseline)])
    assert worse.exit_code == 1
    comparison = json.loads(out.read_text())["comparison"]
    assert comparison["newly_failing"] == ["ok"] and comparison["regression"]
    fake.judge_score = 5
    same = CliRunner().invoke(cli, [*args, "--baseline", str(baseline)])
    assert same.exit_code == 0, same.output


def test_compare_judge_tolerance() -> None:
    def report(mean):
        return {"cases": [{"id": "a", "passed": True}], "summary": {"pass_rate": 1.0, "judge_mean": mean}}

    assert not compare(report(0.76), report(0.8))["regression"]
    assert compare(report(0.7), report(0.8))["regression"]
    assert compare(report(0.7), report(0.8), judge_tolerance=0.2)["regression"] is False
