"""The request-log record carries endpoint, status and TPOT, for answers and for failures."""

from __future__ import annotations

import pytest

from app.errors import ContextLengthError, ServiceUnavailableError
from app.generation import GenerationChunk, GenerationRequest
from app.observability.request_log import RequestLogger, iter_records
from app.observability.request_outcome import build_log_record, log_failure, log_request
from app.observability.settings import RequestLogConfig

CHAT = GenerationRequest(request_id="r1", model="auto", messages=[{"role": "user", "content": "hi"}], tenant="acme")
TEXT = GenerationRequest(request_id="r2", model="small", prompt="once upon", tenant="acme")
HEADERS = {"x-llmgw-cache": "miss", "x-llmgw-path": "pool:small", "x-llmgw-model": "tiny-small"}


def test_stream_record_has_endpoint_status_and_tpot() -> None:
    last = GenerationChunk(finish_reason="stop", prompt_tokens=5, completion_tokens=11, model="tiny-small")
    # start 100.0, first token at 100.2, done at 101.2: 10 tokens after the first in 1.0 s
    rec = build_log_record(CHAT, "t" * 32, "small", last, "answer", HEADERS, True, 100.0, 100.2, finished_at=101.2)
    assert (rec.endpoint, rec.status, rec.error_type) == ("chat", 200, None)
    assert rec.ttft_ms == pytest.approx(200.0) and rec.tpot_ms == pytest.approx(100.0)
    assert rec.latency_ms == pytest.approx(1200.0)
    unary = build_log_record(TEXT, "", "small", last, "x", HEADERS, False, 100.0, None, finished_at=100.5)
    assert unary.endpoint == "completions" and unary.ttft_ms is None and unary.tpot_ms is None


def test_failures_are_logged_with_their_status(tmp_path) -> None:
    path = tmp_path / "requests.jsonl"
    logger = RequestLogger(RequestLogConfig(path=str(path)))
    last = GenerationChunk(finish_reason="stop", prompt_tokens=5, completion_tokens=3, model="tiny-small")
    log_request(logger, CHAT, "", "small", last, "ok", HEADERS, False, 0.0, None)
    log_failure(logger, TEXT, "", "", ContextLengthError("too long"), {}, False, 0.0)
    log_failure(logger, CHAT, "", "large", ServiceUnavailableError("nothing answered"), HEADERS, True, 0.0, 0.1,
                GenerationChunk(completion_tokens=2), "partial")
    logger.close()
    ok, bad, cut = iter_records(str(path), tenant="acme")
    assert (ok.endpoint, ok.status, ok.completion_tokens) == ("chat", 200, 3)
    assert (bad.endpoint, bad.status, bad.error_type, bad.route) == ("completions", 400, "invalid_request_error", "-")
    assert bad.prompt_tokens == 0 and bad.response == ""
    assert (cut.status, cut.route, cut.response, cut.completion_tokens) == (503, "large", "partial", 2)
