"""Run a regression suite against a gateway (the prompt rendered by the gateway itself) and compare
with a baseline report."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from app.evaluation.checks import run_checks
from app.evaluation.judge import Judge, JudgeError
from app.evaluation.suite import Case, Suite


def case_request_text(case: Case, prompt: dict[str, Any]) -> str:
    """What the judge is told the request was: the prompt reference, its variables and the client's turns."""
    lines = [f"(prompt template {prompt['name']} with variables {json.dumps(case.variables, ensure_ascii=False)})"]
    lines += [f"{m.role}: {m.content}" for m in case.messages]
    return "\n".join(lines)


async def run_case(client: httpx.AsyncClient, suite: Suite, case: Case, prompt: dict[str, Any], model: str,
                   judge: Judge | None, headers: dict[str, str]) -> dict[str, Any]:
    body = {"model": model, "messages": [m.model_dump() for m in case.messages], "cache": False,
            "prompt_ref": {**prompt, "variables": case.variables}, **suite.sampling}
    started = time.perf_counter()
    result: dict[str, Any] = {"id": case.id, "passed": False, "status": None, "latency_ms": None, "answer": None,
                              "prompt": None, "checks": [], "judge": None, "failures": []}
    try:
        resp = await client.post("/v1/chat/completions", json=body, headers=headers)
    except httpx.HTTPError as exc:
        result["failures"].append(f"request failed: {type(exc).__name__}")
        return result
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    result["status"] = resp.status_code
    result["prompt"] = resp.headers.get("x-llmgw-prompt")
    try:
        data = resp.json()
    except ValueError:
        data = {}
    if resp.status_code != 200:
        message = (data.get("error") or {}).get("message", "") if isinstance(data, dict) else ""
        result["failures"].append(f"HTTP {resp.status_code}: {message[:300]}")
        return result
    answer = ((data.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
    result["answer"] = answer
    checks = run_checks(case.expect, answer)
    result["checks"] = [c.to_dict() for c in checks]
    result["failures"] += [f"{c.kind}: {c.detail}" for c in checks if not c.passed]
    min_score = case.min_score if case.min_score is not None else (suite.judge.min_score if suite.judge else None)
    if suite.judge is not None and case.judge and judge is not None:
        criteria = case.criteria or suite.judge.criteria
        try:
            verdict = await judge.score(request=case_request_text(case, prompt), answer=answer, criteria=criteria,
                                        reference=case.reference)
            result["judge"] = verdict.to_dict()
            if min_score is not None and verdict.score < min_score:
                result["failures"].append(f"judge score {verdict.score:.2f} < {min_score:.2f}")
        except JudgeError as exc:
            result["judge"] = {"error": str(exc)}
            result["failures"].append(f"judge: {exc}")
    result["passed"] = not result["failures"]
    return result


async def run_suite(suite: Suite, *, base_url: str, prompt: dict[str, Any], model: str | None = None,
                    judge: Judge | None = None, headers: dict[str, str] | None = None, concurrency: int = 2,
                    timeout_s: float = 120.0, on_case: Callable[[dict[str, Any]], None] | None = None,
                    ) -> dict[str, Any]:
    """The report: every case's status, answer, checks and judge verdict, plus the summary."""
    model = model or suite.model
    started_at, started = time.time(), time.perf_counter()
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s) as client:
        async def one(case: Case) -> dict[str, Any]:
            async with gate:
                result = await run_case(client, suite, case, prompt, model, judge, headers or {})
            if on_case is not None:
                on_case(result)
            return result

        cases = await asyncio.gather(*(one(c) for c in suite.cases))
    scores = [c["judge"]["score"] for c in cases if c["judge"] and "score" in c["judge"]]
    passed = sum(c["passed"] for c in cases)
    ref = prompt["name"] + (f"@{prompt['version']}" if "version" in prompt else f"@{prompt['label']}"
                            if "label" in prompt else "")
    return {
        "suite": suite.name, "prompt": ref, "model": model, "url": base_url, "started_at": started_at,
        "duration_s": round(time.perf_counter() - started, 2), "judge_model": judge.model if judge else None,
        "summary": {"cases": len(cases), "passed": passed, "pass_rate": round(passed / len(cases), 4),
                    "judge_mean": round(sum(scores) / len(scores), 4) if scores else None,
                    "judged": len(scores), "errors": sum(c["status"] != 200 for c in cases)},
        "cases": list(cases),
    }


def compare(report: dict[str, Any], baseline: dict[str, Any], *, pass_tolerance: float = 0.0,
            judge_tolerance: float = 0.05) -> dict[str, Any]:
    """Regression against ``baseline``: a case that passed there fails now, the pass rate fell by more than
    ``pass_tolerance``, or the mean judge score fell by more than ``judge_tolerance``."""
    before = {c["id"]: c["passed"] for c in baseline.get("cases", [])}
    now = {c["id"]: c["passed"] for c in report["cases"]}
    newly_failing = sorted(i for i, ok in now.items() if before.get(i) and not ok)
    fixed = sorted(i for i, ok in now.items() if ok and i in before and not before[i])
    b, n = baseline.get("summary", {}), report["summary"]
    reasons = []
    if newly_failing:
        reasons.append(f"{len(newly_failing)} case(s) passed in the baseline and fail now")
    if b.get("pass_rate") is not None and b["pass_rate"] - n["pass_rate"] > pass_tolerance:
        reasons.append(f"pass rate {n['pass_rate']:.2%} < baseline {b['pass_rate']:.2%}")
    if b.get("judge_mean") is not None and n.get("judge_mean") is not None \
            and b["judge_mean"] - n["judge_mean"] > judge_tolerance:
        reasons.append(f"judge mean {n['judge_mean']:.3f} < baseline {b['judge_mean']:.3f} - {judge_tolerance}")
    return {"regression": bool(reasons), "reasons": reasons, "newly_failing": newly_failing, "fixed": fixed,
            "baseline": {"prompt": baseline.get("prompt"), "pass_rate": b.get("pass_rate"),
                         "judge_mean": b.get("judge_mean")}}
