"""Registry prompts through the real graph (tiny models): admin API, prompt_ref rendering and errors,
headers, and `llmgw eval` scoring a small suite with the judge served by the local fake provider."""

from __future__ import annotations

import json
import os
import uuid

import httpx
import pytest
import yaml
from openai import OpenAI
from typer.testing import CliRunner

from app.cli import cli
from tests.conftest import PROVIDER_KEY_ENV
from tests.prompt_fixtures import template

pytestmark = pytest.mark.gateway


@pytest.fixture()
def tenant(gateway_url: str) -> str:
    probe = admin(gateway_url, "GET", "/admin/prompts", params={"global": "true"})
    if probe.status_code == 404 and "not enabled" in probe.text:
        pytest.skip("the render_prompt stage is not wired into build_pipeline yet")
    assert probe.status_code == 200, probe.text
    return f"prompts-{uuid.uuid4().hex[:8]}"


def admin(gateway_url: str, method: str, path: str, **kw) -> httpx.Response:
    """An admin call with the test graph's admin key (tests/conftest.py; the CLI reads the same env var)."""
    headers = {"Authorization": f"Bearer {os.environ['LLMGW_ADMIN_KEY']}"}
    return httpx.request(method, f"{gateway_url}{path}", timeout=30, headers=headers, **kw)


def test_prompt_ref_through_the_gateway(gateway_url: str, tenant: str) -> None:
    r = admin(gateway_url, "POST", "/admin/prompts",
              json={"tenant": tenant, "name": "support", "template": template(), "labels": ["production"]})
    assert r.status_code == 200, r.text
    client = OpenAI(base_url=f"{gateway_url}/v1", api_key="local", default_headers={"x-llmgw-tenant": tenant})
    raw = client.chat.completions.with_raw_response.create(
        model="small", max_tokens=4, messages=[{"role": "user", "content": "hello"}],
        extra_body={"prompt_ref": {"name": "support", "variables": {"customer": "Ann", "product": "Ray"}}})
    assert raw.headers["x-llmgw-prompt"] == "support@1"
    assert raw.parse().choices[0].message.content is not None
    body = {"model": "small", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-llmgw-tenant": tenant}
    r = httpx.post(f"{gateway_url}/v1/chat/completions", headers=headers, timeout=60, json={
        **body, "prompt_ref": {"name": "support", "variables": {"customer": "Ann"}}})
    assert r.status_code == 400 and "Missing prompt variables: product" in r.json()["error"]["message"]
    r = httpx.post(f"{gateway_url}/v1/chat/completions", headers=headers, timeout=60, json={
        **body, "prompt_ref": {"name": "support", "label": "staging", "variables": {}}})
    assert r.status_code == 404 and r.json()["error"]["code"] == "prompt_label_not_found"
    r = httpx.post(f"{gateway_url}/v1/chat/completions", headers={"x-llmgw-tenant": "someone-else"}, timeout=60,
                   json={**body, "prompt_ref": {"name": "support", "variables": {}}})
    assert r.status_code == 404  # another tenant's prompt
    r = admin(gateway_url, "DELETE", "/admin/prompts/support/versions/1", params={"tenant": tenant})
    assert r.status_code == 409


def test_cli_promote_and_rollback_over_http(gateway_url: str, tenant: str, tmp_path) -> None:
    f = tmp_path / "t.yaml"
    for system in ("one {{ customer }} {{ product }}", "two {{ customer }} {{ product }}"):
        f.write_text(yaml.safe_dump(template(system)))
        r = CliRunner().invoke(cli, ["prompts", "create", "greet", "--file", str(f), "--tenant", tenant,
                                     "--url", gateway_url])
        assert r.exit_code == 0, r.output

    def served() -> str:
        resp = httpx.post(f"{gateway_url}/v1/chat/completions", headers={"x-llmgw-tenant": tenant}, timeout=60,
                          json={"model": "small", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}],
                                "prompt_ref": {"name": "greet", "variables": {"customer": "a", "product": "b"}}})
        assert resp.status_code == 200, resp.text
        return resp.headers["x-llmgw-prompt"]

    for args, expected in ((["promote", "greet", "1"], "greet@1"), (["promote", "greet", "2"], "greet@2"),
                           (["rollback", "greet"], "greet@1")):
        r = CliRunner().invoke(cli, ["prompts", *args, "--tenant", tenant, "--url", gateway_url])
        assert r.exit_code == 0, r.output
        assert served() == expected
    r = CliRunner().invoke(cli, ["prompts", "diff", "greet", "1", "2", "--tenant", tenant, "--url", gateway_url])
    assert r.exit_code == 0 and "+++ greet@2" in r.output


def test_eval_suite_on_the_tiny_model_with_the_fake_judge(gateway_url: str, tenant: str, fake_provider,
                                                          tmp_path) -> None:
    r = admin(gateway_url, "POST", "/admin/prompts",
              json={"tenant": tenant, "name": "qa", "template": template(), "labels": ["production"]})
    assert r.status_code == 200, r.text
    suite = {"name": "qa-regression", "model": "small", "sampling": {"temperature": 0, "max_tokens": 8},
             "judge": {"criteria": ["correctness", "helpfulness"], "min_score": 0.5},
             "cases": [
                 {"id": "answers", "variables": {"customer": "Ann", "product": "Ray"},
                  "messages": [{"role": "user", "content": "How do I start?"}],
                  "expect": {"not_contains": "zz-never-produced-zz"}},
                 {"id": "exact", "variables": {"customer": "Bob", "product": "Serve"},
                  "messages": [{"role": "user", "content": "Say hi"}],
                  "expect": {"exact": "this exact sentence will not come out of a random model"}, "judge": False},
             ]}
    suite_file, judge_file, out = tmp_path / "suite.yaml", tmp_path / "judge.yaml", tmp_path / "report.json"
    suite_file.write_text(yaml.safe_dump(suite))
    judge_file.write_text(yaml.safe_dump({"provider": {
        "name": "judge", "kind": "openai", "base_url": f"{fake_provider.url}/v1", "model": "fake-judge",
        "api_key_env": PROVIDER_KEY_ENV, "timeout_s": 5}}))
    fake_provider.judge_score = 4
    args = ["eval", str(suite_file), "--prompt", "qa@1", "--url", gateway_url, "--tenant", tenant,
            "--judge-config", str(judge_file), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output  # no baseline: no regression
    report = json.loads(out.read_text())
    cases = {c["id"]: c for c in report["cases"]}
    assert cases["answers"]["status"] == 200 and cases["answers"]["prompt"] == "qa@1"
    assert cases["answers"]["passed"] and cases["answers"]["judge"]["score"] == 0.75
    assert not cases["exact"]["passed"] and cases["exact"]["judge"] is None
    assert report["summary"] == {"cases": 2, "passed": 1, "pass_rate": 0.5, "judge_mean": 0.75, "judged": 1,
                                 "errors": 0}
    judged = [q for q in fake_provider.requests if "LLMGW-JUDGE-RUBRIC-V1" in json.dumps(q["body"])]
    assert judged and "CRITERIA: correctness, helpfulness" in judged[-1]["body"]["messages"][0]["content"]
    baseline = {**report, "cases": [{**c, "passed": True} for c in report["cases"]],
                "summary": {**report["summary"], "passed": 2, "pass_rate": 1.0}}
    baseline_file = tmp_path / "baseline.json"
    baseline_file.write_text(json.dumps(baseline))
    regressed = CliRunner().invoke(cli, [*args, "--baseline", str(baseline_file)])
    assert regressed.exit_code == 1, regressed.output
    assert json.loads(out.read_text())["comparison"]["newly_failing"] == ["exact"]
    fake_provider.judge_score = 1  # the judge now scores 0: the judged case fails its min_score
    worse = CliRunner().invoke(cli, [*args, "--baseline", str(baseline_file)])
    assert worse.exit_code == 1
    assert json.loads(out.read_text())["comparison"]["newly_failing"] == ["answers", "exact"]
    fake_provider.judge_score = 4
