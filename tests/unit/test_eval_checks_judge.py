"""Deterministic checks, and the LLM judge against the local fake provider (real HTTP, OpenAI wire)."""

from __future__ import annotations

import os

import pytest

from app.evaluation.checks import Expectation, run_checks
from app.evaluation.judge import Judge, JudgeError, parse_verdict
from app.evaluation.settings import JudgeConfig
from app.resilience.settings import ProviderConfig
from tests.fakes.provider_server import FakeProvider

KEY_ENV = "LLMGW_TEST_JUDGE_KEY"


def test_checks() -> None:
    exp = Expectation(contains=["Paris", "France"], not_contains="London", regex=r"\d{4}", exact=None)
    results = run_checks(exp, "Paris is the capital of France since 987.")
    assert [r.passed for r in results] == [True, True, True, False]
    assert results[3].detail == "no match for '\\\\d{4}'"
    assert all(r.passed for r in run_checks(Expectation(exact=" 42 "), "42\n"))
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    assert run_checks(Expectation(json_schema=schema), '```json\n{"city": "Paris"}\n```')[0].passed
    bad = run_checks(Expectation(json_schema=schema), '{"city": 3}')[0]
    assert not bad.passed and bad.detail.startswith("at city:")
    assert run_checks(Expectation(json_schema=schema), "not json")[0].detail == "the answer is not JSON"
    assert run_checks(Expectation(contains="paris", case_sensitive=False), "PARIS")[0].passed
    with pytest.raises(ValueError):
        Expectation(json_schema={"type": "nonsense"})


def test_parse_verdict_validates() -> None:
    scores, why = parse_verdict('Sure! {"scores": {"a": 5, "b": 2}, "reasoning": "ok"}', ["a", "b"])
    assert scores == {"a": 5, "b": 2} and why == "ok"
    for bad in ('{"scores": {"a": 6, "b": 2}}', '{"scores": {"a": 5}}', "no json", '{"scores": {"a": "5", "b": 1}}'):
        with pytest.raises(JudgeError):
            parse_verdict(bad, ["a", "b"])


@pytest.fixture()
def fake():
    os.environ[KEY_ENV] = "sk-judge-test"
    server = FakeProvider().start()
    yield server
    server.stop()


def judge_for(fake: FakeProvider, **kw) -> Judge:
    provider = ProviderConfig(name="judge", kind="openai", base_url=f"{fake.url}/v1", model="fake-judge",
                              api_key_env=KEY_ENV, timeout_s=5)
    return Judge(JudgeConfig(provider=provider, **kw))


async def test_judge_scores_through_the_provider_client(fake: FakeProvider) -> None:
    judge = judge_for(fake, criteria=["correctness", "helpfulness"])
    fake.judge_score = 5
    result = await judge.score(request="user: 2+2?", answer="4", reference="4")
    assert result.scores == {"correctness": 5, "helpfulness": 5} and result.score == 1.0
    fake.judge_score = 2
    assert (await judge.score(request="q", answer="a")).score == 0.25
    body = fake.requests[-1]["body"]
    assert body["model"] == "fake-judge" and body["temperature"] == 0.0
    assert "<answer>\na\n</answer>" in body["messages"][1]["content"]
    fake.judge_reply = "I think it is great!"
    with pytest.raises(JudgeError, match="no JSON"):
        await judge.score(request="q", answer="a")
    fake.judge_reply, fake.mode = None, "500"
    with pytest.raises(JudgeError, match="judge call failed"):
        await judge.score(request="q", answer="a")
    await judge.aclose()
