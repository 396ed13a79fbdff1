"""Breakers, retries and the provider wire clients against a real local fake provider server."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from app.errors import InvalidRequestError, ServiceUnavailableError, UpstreamError
from app.generation import GenerationChunk, GenerationRequest, SamplingOptions
from app.resilience.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from app.resilience.chain import Step, run_chain
from app.resilience.providers import make_provider
from app.resilience.retry import backoff_delay, call_with_retries
from app.resilience.settings import BreakerConfig, ProviderConfig, RetryConfig
from tests.fakes.provider_server import FakeProvider

KEY_ENV = "LLMGW_TEST_PROVIDER_KEY"
SECRET = "sk-test-secret-value-123"


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server = FakeProvider().start()
    yield server
    server.stop()


def provider(fake: FakeProvider, kind: str, timeout: float = 2.0):
    base = fake.url + ("/v1" if kind == "openai" else "")
    return make_provider(ProviderConfig(name=kind, kind=kind, base_url=base, model=f"{kind}-model",
                                        api_key_env=KEY_ENV, timeout_s=timeout))


def req(stream_text: str = "hi") -> GenerationRequest:
    return GenerationRequest("r1", "auto", messages=[{"role": "system", "content": "be brief"},
                                                     {"role": "user", "content": stream_text}],
                             sampling=SamplingOptions(max_tokens=20, temperature=0.0))


async def collect(stream) -> list[GenerationChunk]:
    return [c async for c in stream]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_transitions() -> None:
    clock = Clock()
    b = CircuitBreaker("pool:small", BreakerConfig(failure_threshold=3, window_s=10, cooldown_s=5), clock)
    for _ in range(2):
        b.record_failure()
    assert b.state == CLOSED and b.allow()
    clock.now = 11  # old failures fall out of the window
    b.record_failure()
    b.record_failure()
    assert b.state == CLOSED
    b.record_failure()
    assert b.state == OPEN and not b.allow()
    clock.now = 15.9
    assert b.state == OPEN
    clock.now = 16.1
    assert b.state == HALF_OPEN
    assert b.allow() and not b.allow()  # a single probe
    b.record_failure()
    assert b.state == OPEN
    clock.now = 30
    assert b.allow()
    b.record_success()
    assert b.state == CLOSED
    assert b.transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN),
                             (HALF_OPEN, CLOSED)]


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    cfg = RetryConfig(base_delay_s=0.1, max_delay_s=1.0)
    rng = random.Random(0)
    delays = [backoff_delay(n, cfg, None, rng) for n in (1, 2, 3, 4, 5, 6)]
    assert 0.05 <= delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2 and 0.5 <= delays[5] <= 1.0
    assert backoff_delay(1, cfg, 2.5, rng) == 2.5


def test_retries_only_retryable_errors_with_recorded_delays() -> None:
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)

    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            err = UpstreamError("503")
            err.retry_after = 0.7 if calls["n"] == 2 else None
            raise err
        return "ok"

    cfg = RetryConfig(attempts=4, base_delay_s=0.1, max_delay_s=1.0)
    assert asyncio.run(call_with_retries(flaky, cfg, sleep=sleep, rng=random.Random(1))) == "ok"
    assert calls["n"] == 3 and len(slept) == 2 and slept[1] == 0.7

    async def bad() -> str:
        calls["n"] += 1
        raise InvalidRequestError("no")

    calls["n"] = 0
    with pytest.raises(InvalidRequestError):
        asyncio.run(call_with_retries(bad, cfg, sleep=sleep))
    assert calls["n"] == 1


def test_retry_after_timing_is_real(fake: FakeProvider) -> None:
    fake.retry_after = 0.3
    fake.modes_queue = ["429"]
    p = provider(fake, "openai")
    t0 = time.monotonic()
    chunks = asyncio.run(call_with_retries(lambda: collect(p.stream(req())), RetryConfig(base_delay_s=0.01)))
    assert "".join(c.text for c in chunks) == "Hello from the fake provider."
    gap = fake.requests[1]["t"] - fake.requests[0]["t"]
    assert gap >= 0.3 and time.monotonic() - t0 < 3


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_wire_formats_stream_and_auth(fake: FakeProvider, kind: str) -> None:
    chunks = asyncio.run(collect(provider(fake, kind).stream(req())))
    assert "".join(c.text for c in chunks) == "Hello from the fake provider."
    assert chunks[-1].finish_reason == "stop" and chunks[-1].completion_tokens == 6
    sent = fake.requests[-1]
    if kind == "openai":
        assert sent["path"] == "/v1/chat/completions" and sent["headers"]["authorization"] == f"Bearer {SECRET}"
        assert sent["body"]["messages"][0]["role"] == "system" and sent["body"]["stream"] is True
    else:
        assert sent["path"] == "/v1/messages" and sent["headers"]["x-api-key"] == SECRET
        assert sent["body"]["system"] == "be brief" and [m["role"] for m in sent["body"]["messages"]] == ["user"]


@pytest.mark.parametrize(
    ("mode", "retryable", "code"),
    [("500", True, "upstream_500"), ("503", True, "upstream_503"), ("429", True, "upstream_429"),
     ("400", False, "upstream_400"), ("slow", True, "upstream_timeout"), ("reset", True, "upstream_connection"),
     ("broken_stream", True, None)],
)
def test_fault_modes_map_to_upstream_errors_without_secrets(fake: FakeProvider, mode: str, retryable: bool,
                                                            code: str | None) -> None:
    fake.mode = mode
    fake.slow_s = 1.5
    with pytest.raises(UpstreamError) as info:
        asyncio.run(collect(provider(fake, "openai", timeout=0.5).stream(req())))
    err = info.value
    assert err.retryable is retryable and SECRET not in err.message and SECRET not in repr(err.to_dict())
    if code:
        assert err.code == code
    if mode == "429":
        assert err.retry_after == fake.retry_after


def test_missing_key_is_not_retryable(fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(UpstreamError) as info:
        asyncio.run(collect(provider(fake, "anthropic").stream(req())))
    assert not info.value.retryable and KEY_ENV in info.value.message and fake.requests == []


async def _fails() -> GenerationChunk:
    raise UpstreamError("down")
    yield  # pragma: no cover


async def _ok(text: str):
    yield GenerationChunk(text, None)
    yield GenerationChunk("!", "stop")


def test_half_open_probe_cannot_wedge_the_breaker() -> None:
    clock = Clock()
    b = CircuitBreaker("pool:small", BreakerConfig(failure_threshold=1, window_s=10, cooldown_s=5), clock)
    b.record_failure()
    clock.now = 5
    assert b.allow() and not b.allow()  # the probe is out
    clock.now = 9.9
    assert not b.allow()
    clock.now = 10.1  # no word from it for a cool-down: taken as lost, the next request probes
    assert b.allow() and not b.allow()
    b.abandon()  # that one was cancelled (client gone): the slot is free at once
    assert b.allow()
    b.record_success()
    assert b.state == CLOSED


def test_cancelled_probe_frees_the_breaker_slot() -> None:
    clock = Clock()
    b = CircuitBreaker("pool:small", BreakerConfig(failure_threshold=1, cooldown_s=5), clock)
    b.record_failure()
    clock.now = 6

    async def hangs():
        await asyncio.sleep(3600)
        yield GenerationChunk("never", None)

    async def go() -> None:
        task = asyncio.create_task(run_chain([Step("pool:small", hangs, b)], RetryConfig(attempts=1)))
        await asyncio.sleep(0.05)
        assert b._probe_in_flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert b.state == HALF_OPEN and b.allow()


def test_chain_walks_steps_skips_open_breakers_and_reports_path() -> None:
    clock = Clock()
    cfg = BreakerConfig(failure_threshold=2, cooldown_s=10)
    b_small = CircuitBreaker("pool:small", cfg, clock)
    b_large = CircuitBreaker("pool:large", cfg, clock)
    retry = RetryConfig(attempts=2, base_delay_s=0.001)
    steps = [Step("pool:small", _fails, b_small), Step("pool:large", lambda: _ok("large"), b_large)]
    result = asyncio.run(run_chain(steps, retry))
    assert result.path == "pool:large" and result.first.text == "large"
    assert b_small.state == OPEN  # two failed attempts opened it
    again = asyncio.run(run_chain(steps, retry))
    assert again.path == "pool:large" and again.attempts == [("pool:small", "breaker_open")]


def test_chain_all_down_is_503_with_retry_after_and_bad_input_stops() -> None:
    retry = RetryConfig(attempts=1)
    with pytest.raises(ServiceUnavailableError) as info:
        asyncio.run(run_chain([Step("pool:small", _fails), Step("providers", _fails)], retry, retry_after_s=7))
    assert info.value.status_code == 503 and info.value.headers["Retry-After"] == "7"
    assert "pool:small" in info.value.message and "providers" in info.value.message

    async def bad():
        raise InvalidRequestError("prompt too long")
        yield  # pragma: no cover

    with pytest.raises(InvalidRequestError):
        asyncio.run(run_chain([Step("pool:small", bad), Step("providers", lambda: _ok("x"))], retry))


def test_chain_falls_through_to_a_provider_after_pool_failures(fake: FakeProvider) -> None:
    p = provider(fake, "anthropic")
    steps = [Step("pool:small", _fails), Step("pool:large", _fails), Step("providers", lambda: p.stream(req()))]

    async def go():
        result = await run_chain(steps, RetryConfig(attempts=1))
        return result, result.first.text + "".join([c.text async for c in result.rest])

    result, text = asyncio.run(go())
    assert result.path == "providers" and text == "Hello from the fake provider."
    assert [name for name, _ in result.attempts] == ["pool:small", "pool:large"]
