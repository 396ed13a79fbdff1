"""Canaries: reference requests with known expected answers, run periodically or from the CLI.

The tiny local models emit meaningless text, so useful checks are structure (``json_path``),
determinism (``exact`` against an answer recorded with ``temperature: 0`` and a ``seed``),
``max_latency_ms``, ``status`` and the gateway's headers (route, cache, path).
A deviation bumps ``llmgw_canary_deviation``/``llmgw_canary_runs_total`` and logs a warning event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from app.observability.metrics import CANARY_DEVIATION, CANARY_LATENCY, CANARY_RUNS
from app.observability.settings import CanaryCheck, CanaryConfig, CanarySettings

logger = logging.getLogger("llmgw.canary")
DEFAULT_FIELDS = ("choices.0.message.content", "choices.0.text")
# (request text, answer) -> judge score 0..1 (app.evaluation.judge.canary_judge); raises when it cannot judge.
JudgeFn = Callable[[str, str], Awaitable[float]]


@dataclass(slots=True)
class CanaryResult:
    name: str
    ok: bool
    status: int | None
    latency_ms: float
    failures: list[str] = field(default_factory=list)
    answer: str | None = None
    trace_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # the gateway's x-llmgw-* headers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def json_path(data: Any, path: str) -> Any:
    """``a.0.b`` into nested dicts/lists; raises KeyError when missing."""
    node = data
    for part in path.split("."):
        if isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(path)
    return node


def answer_text(body: Any, field_path: str | None = None) -> str | None:
    for path in (field_path,) if field_path else DEFAULT_FIELDS:
        try:
            value = json_path(body, path)
        except KeyError:
            continue
        return value if isinstance(value, str) else json.dumps(value)
    return None


def evaluate(check: CanaryCheck, status: int, latency_ms: float, body: Any, headers: httpx.Headers) -> str | None:
    """None if ``check`` holds, else a short description of the deviation (no response text in it)."""
    kind = check.kind
    if kind == "judge_score":  # async: judged in run_canary
        return None
    if kind == "status":
        return None if status == int(check.value) else f"status {status} != {check.value}"
    if kind == "max_latency_ms":
        return None if latency_ms <= float(check.value) else f"latency {latency_ms:.0f} ms > {check.value} ms"
    if kind == "header":
        actual = headers.get(check.name or "")
        if actual is not None and re.fullmatch(str(check.value), actual):
            return None
        return f"header {check.name}={actual!r} !~ {check.value!r}"
    if kind == "json_path":
        try:
            json_path(body, check.field or "")
        except KeyError:
            return f"missing {check.field}"
        return None
    text = answer_text(body, check.field)
    if text is None:
        return f"no answer at {check.field or ' / '.join(DEFAULT_FIELDS)}"
    if kind == "exact":
        return None if text == str(check.value) else "answer differs from the recorded answer"
    if kind == "contains":
        return None if str(check.value) in text else f"answer lacks {check.value!r}"
    if kind == "regex":
        return None if re.search(str(check.value), text) else f"answer !~ {check.value!r}"
    return f"unknown check {kind}"


def canary_request_text(body: dict[str, Any]) -> str:
    """What a judge is told the canary asked: its messages / prompt, and the registry prompt it references."""
    lines = []
    ref = body.get("prompt_ref")
    if isinstance(ref, dict):
        lines.append(f"(registry prompt {ref.get('name')}@{ref.get('version') or ref.get('label') or 'production'} "
                     f"with variables {json.dumps(ref.get('variables') or {})})")
    lines += [f"{m.get('role')}: {m.get('content')}" for m in body.get("messages") or [] if isinstance(m, dict)]
    if isinstance(body.get("prompt"), str):
        lines.append(body["prompt"])
    return "\n".join(lines)


async def judge_failures(canary: CanaryConfig, body: Any, judge: JudgeFn | None) -> list[str]:
    """Deviations of the ``judge_score`` checks: no judge, no answer, an error, or a score under the threshold."""
    failures = []
    for check in (c for c in canary.checks if c.kind == "judge_score"):
        answer = answer_text(body, check.field) if body is not None else None
        if judge is None:
            failures.append("judge_score: no judge configured (evaluation.judge)")
        elif answer is None:
            failures.append(f"judge_score: no answer at {check.field or ' / '.join(DEFAULT_FIELDS)}")
        else:
            try:
                score = await judge(canary_request_text(canary.body), answer)
            except Exception as exc:
                failures.append(f"judge_score: judge failed ({type(exc).__name__})")
                continue
            if score < float(check.value):
                failures.append(f"judge score {score:.2f} < {float(check.value):.2f}")
    return failures


async def run_canary(client: httpx.AsyncClient, canary: CanaryConfig, timeout_s: float = 30.0,
                     judge: JudgeFn | None = None) -> CanaryResult:
    """Send one canary request, evaluate its checks, update metrics and log a deviation event."""
    headers = dict(canary.headers)
    if canary.api_key_env:
        key = os.environ.get(canary.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
    started = time.perf_counter()
    try:
        response = await client.post(canary.path, json=canary.body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        latency_ms = (time.perf_counter() - started) * 1000
        result = CanaryResult(canary.name, False, None, latency_ms, [f"request failed: {type(exc).__name__}"])
        _record(result, "error")
        return result
    latency_ms = (time.perf_counter() - started) * 1000
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    failures = [f for c in canary.checks if (f := evaluate(c, status, latency_ms, body, response.headers))]
    failures += await judge_failures(canary, body, judge)
    gateway_headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-llmgw-")}
    result = CanaryResult(canary.name, not failures, response.status_code, latency_ms, failures,
                          answer_text(body) if body is not None else None,
                          response.headers.get("x-llmgw-trace-id", ""), gateway_headers)
    _record(result, "ok" if result.ok else "deviation")
    return result


def _record(result: CanaryResult, outcome: str) -> None:
    CANARY_RUNS.labels(result.name, outcome).inc()
    CANARY_LATENCY.labels(result.name).observe(result.latency_ms / 1000)
    CANARY_DEVIATION.labels(result.name).set(0 if result.ok else 1)
    if not result.ok:
        logger.warning("canary_deviation %s", json.dumps({
            "event": "canary_deviation", "canary": result.name, "status": result.status,
            "latency_ms": round(result.latency_ms, 1), "failures": result.failures, "trace_id": result.trace_id,
        }))


async def run_canaries(base_url: str, canaries: Sequence[CanaryConfig], timeout_s: float = 30.0,
                       client: httpx.AsyncClient | None = None, judge: JudgeFn | None = None) -> list[CanaryResult]:
    """Run ``canaries`` one after another (they are few; sequential keeps latency figures clean)."""
    if client is not None:
        return [await run_canary(client, c, timeout_s, judge) for c in canaries]
    async with httpx.AsyncClient(base_url=base_url) as own:
        return [await run_canary(own, c, timeout_s, judge) for c in canaries]


async def run_periodically(base_url: str, settings: CanarySettings, stop: asyncio.Event | None = None,
                           judge: JudgeFn | None = None) -> None:
    """Run the configured canaries every ``interval_s`` until ``stop`` is set (start as an asyncio task)."""
    stop = stop or asyncio.Event()
    async with httpx.AsyncClient(base_url=base_url) as client:
        while not stop.is_set():
            try:
                await run_canaries(base_url, settings.canaries, settings.timeout_s, client=client, judge=judge)
            except Exception:  # never let the loop die
                logger.exception("canary run failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.interval_s)


def record_expected(results: Sequence[CanaryResult], canaries: Sequence[CanaryConfig]) -> list[CanaryConfig]:
    """Canaries with an ``exact`` check set to the answers just observed (to pin a deterministic answer)."""
    answers = {r.name: r.answer for r in results if r.status == 200 and r.answer is not None}
    out = []
    for canary in canaries:
        if canary.name not in answers:
            out.append(canary)
            continue
        checks = [c for c in canary.checks if c.kind != "exact"]
        checks.append(CanaryCheck(kind="exact", value=answers[canary.name]))
        out.append(canary.model_copy(update={"checks": checks}))
    return out
