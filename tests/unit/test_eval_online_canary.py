"""Online evaluation (sampled answers scored by the judge into the request log and metrics) and canaries
failing on a judge score, with the judge served by the local fake provider (OpenAI wire)."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from typer.testing import CliRunner

from app.evaluation.judge import Judge, canary_judge
from app.evaluation.online import OnlineEvaluator
from app.evaluation.settings import JudgeConfig, OnlineEvalConfig
from app.observability.canary import run_canaries
from app.observability.cli import canary_app
from app.observability.metrics import EVAL_SCORE
from app.observability.request_log import RequestLogger, RequestLogRecord, iter_records
from app.observability.settings import CanaryConfig, RequestLogConfig
from app.resilience.settings import ProviderConfig
from tests.fakes.provider_server import FakeProvider
from tests.unit.test_obs_canary import server_url  # noqa: F401  (a real local HTTP "gateway")

KEY_ENV = "LLMGW_TEST_JUDGE_KEY"


@pytest.fixture()
def fake():
    os.environ[KEY_ENV] = "sk-judge-test"
    server = FakeProvider().start()
    yield server
    server.stop()


def judge_cfg(fake: FakeProvider) -> JudgeConfig:
    return JudgeConfig(provider=ProviderConfig(name="judge", kind="openai", base_url=f"{fake.url}/v1",
                                               model="fake-judge", api_key_env=KEY_ENV, timeout_s=5))


def record(i: int, text: str = "an answer, mail ann@example.com") -> RequestLogRecord:
    return RequestLogRecord(request_id=f"req-{i}", tenant="acme", route="small", response=text,
                            messages=[{"role": "user", "content": "call me at ann@example.com"}],
                            evaluation={"prompt": {"name": "support", "version": 3, "variant": None}})


async def test_online_scores_land_in_the_request_log_and_metrics(fake: FakeProvider, tmp_path) -> None:
    log = RequestLogger(RequestLogConfig(path=str(tmp_path / "req.jsonl")))
    online = OnlineEvaluator(Judge(judge_cfg(fake)), OnlineEvalConfig(enabled=True, sample_rate=1.0,
                                                                      max_concurrency=8), log)
    before = EVAL_SCORE.labels("support", "3", "small", "-", "online")._sum.get()
    fake.judge_score = 5
    assert all(online.submit(record(i)) for i in range(3))
    await online.wait()
    assert log.flush()
    rows = list(iter_records(str(tmp_path / "req.jsonl"), tenant="acme"))
    assert len(rows) == 3 and {r.evaluation["judge"]["score"] for r in rows} == {1.0}
    assert rows[0].evaluation["prompt"]["version"] == 3
    assert EVAL_SCORE.labels("support", "3", "small", "-", "online")._sum.get() - before == 3.0
    judged = [r["body"]["messages"][1]["content"] for r in fake.requests]
    assert all("ann@example.com" not in text for text in judged)  # the judge only sees redacted text
    log.close()


async def test_online_scores_reach_the_experiment_variant_stats(fake: FakeProvider, tmp_path) -> None:
    """`experiment status` shows the judge score of each variant: online scores of served answers land there."""
    from app.prompts.experiment_store import Experiments
    from app.prompts.registry import PromptRegistry
    from app.prompts.store import MemoryPromptStore
    from tests.prompt_fixtures import template

    registry = PromptRegistry(MemoryPromptStore())
    experiments = Experiments(registry)
    await registry.create("acme", "support", template(), labels=["production"])
    await experiments.start("acme", {"name": "ab", "prompt": "support", "variants": [
        {"name": "a", "weight": 1}, {"name": "b", "weight": 1}]})
    log = RequestLogger(RequestLogConfig(path=str(tmp_path / "req.jsonl")))
    online = OnlineEvaluator(Judge(judge_cfg(fake)), OnlineEvalConfig(enabled=True, sample_rate=1.0,
                                                                      max_concurrency=8), log, experiments)
    fake.judge_score = 4  # -> 0.75
    for i, variant in enumerate(("a", "a", "b")):
        rec = record(i)
        rec.evaluation["prompt"] = {"name": "support", "version": 1, "namespace": "acme", "experiment": "ab",
                                    "variant": variant}
        assert online.submit(rec)
    await online.wait()
    stats = (await experiments.status("acme", "ab"))["variants"]
    assert (stats["a"]["judged"], stats["a"]["judge_score_mean"]) == (2, 0.75)
    assert (stats["b"]["judged"], stats["b"]["judge_score_mean"]) == (1, 0.75)
    log.close()


async def test_online_sampling_and_failures(fake: FakeProvider, tmp_path) -> None:
    log = RequestLogger(RequestLogConfig(path=str(tmp_path / "req.jsonl")))
    judge = Judge(judge_cfg(fake))
    none = OnlineEvaluator(judge, OnlineEvalConfig(enabled=True, sample_rate=0.0), log)
    assert not none.submit(record(1))  # not sampled: the caller logs it
    some = OnlineEvaluator(judge, OnlineEvalConfig(enabled=True, sample_rate=0.3), log)
    taken = sum(some.sampled(f"req-{i}") for i in range(10_000))
    assert 2850 <= taken <= 3150
    busy = OnlineEvaluator(judge, OnlineEvalConfig(enabled=True, sample_rate=1.0, max_concurrency=1), log)
    fake.judge_reply = "not json"
    assert busy.submit(record(1)) and not busy.submit(record(2))  # one in flight: the second is not taken
    await busy.wait()
    assert log.flush()
    failed = [r for r in iter_records(str(tmp_path / "req.jsonl"), tenant="acme") if r.request_id == "req-1"]
    assert failed[-1].evaluation["judge"]["error"] == "JudgeError"  # logged anyway, with the failure
    log.close()


def canary(min_score: float) -> CanaryConfig:
    body = {"model": "small", "messages": [{"role": "user", "content": "hello"}],
            "prompt_ref": {"name": "support", "version": 2, "variables": {}}}
    return CanaryConfig(name="quality", body=body, checks=[{"kind": "status", "value": 200},
                                                          {"kind": "judge_score", "value": min_score}])


async def test_canary_fails_on_a_low_judge_score(fake: FakeProvider, server_url: str) -> None:  # noqa: F811
    judge = Judge(judge_cfg(fake))
    fake.judge_score = 2  # -> 0.25
    low, high = await run_canaries(server_url, [canary(0.5), canary(0.2)], judge=canary_judge(judge))
    assert not low.ok and low.failures == ["judge score 0.25 < 0.50"]
    assert high.ok
    assert "registry prompt support@2" in fake.requests[-1]["body"]["messages"][1]["content"]
    (nojudge,) = await run_canaries(server_url, [canary(0.5)])
    assert nojudge.failures == ["judge_score: no judge configured (evaluation.judge)"]


def test_canary_cli_with_judge_config(fake: FakeProvider, server_url: str, tmp_path) -> None:  # noqa: F811
    cfg = tmp_path / "canaries.yaml"
    cfg.write_text(yaml.safe_dump({"canaries": [canary(0.9).model_dump()]}))
    judge_file = tmp_path / "judge.yaml"
    judge_file.write_text(yaml.safe_dump({"evaluation": {"judge": judge_cfg(fake).model_dump()}}))
    fake.judge_score = 5
    ok = CliRunner().invoke(canary_app, ["run", "--url", server_url, "--config", str(cfg), "--judge-config",
                                         str(judge_file), "--json"])
    assert ok.exit_code == 0, ok.output
    fake.judge_score = 3
    bad = CliRunner().invoke(canary_app, ["run", "--url", server_url, "--config", str(cfg), "--judge-config",
                                          str(judge_file), "--json"])
    assert bad.exit_code == 1 and json.loads(bad.output.splitlines()[0])["failures"] == ["judge score 0.50 < 0.90"]
