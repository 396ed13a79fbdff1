"""Batch input validation, the OpenAI status machine, windows and object shapes (pure, no Redis)."""

from __future__ import annotations

import itertools
import json

import pytest
from openai.types import Batch, FileObject

from app.batch.billing import make_estimator, worst_case_tokens
from app.batch.records import batch_object, check_metadata, file_object, output_line, window_seconds
from app.batch.status import TERMINAL, can_transition, check_cancellable, sources
from app.batch.validation import LineValidator, split_lines
from app.errors import InvalidRequestError


def line(custom_id: str, url: str = "/v1/chat/completions", body: object = None, **extra) -> bytes:
    body = {"model": "small", "messages": [{"role": "user", "content": "hi"}]} if body is None else body
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body, **extra}).encode()


def check_of(*lines: bytes, chunk: int = 7, max_lines: int = 50_000, estimate=None):
    data = b"\n".join(lines) + b"\n"
    v = LineValidator(max_lines, estimate)
    for i in range(0, len(data), chunk):  # split mid-line: the validator must reassemble lines
        v.feed(data[i:i + chunk])
    return v.finish()


def test_valid_file_has_no_errors_and_counts_lines() -> None:
    check = check_of(line("a"), b"", line("b"), line("c"))
    assert check.lines == 3 and check.max_line == 4  # blank line 2 skipped, numbering kept
    assert check.batch_errors("/v1/chat/completions") == []


def test_not_json_fails_naming_the_line() -> None:
    check = check_of(line("a"), b"{not json", line("c"))
    errors = check.batch_errors("/v1/chat/completions")
    assert [(e["code"], e["line"]) for e in errors] == [("invalid_json_line", 2)]


def test_duplicate_custom_id_fails_naming_the_second_line() -> None:
    errors = check_of(line("a"), line("b"), line("a")).batch_errors("/v1/chat/completions")
    assert [(e["code"], e["line"], e["param"]) for e in errors] == [("duplicate_custom_id", 3, "custom_id")]


def test_line_for_another_endpoint_fails_naming_the_line() -> None:
    check = check_of(line("a"), line("b"), line("c", url="/v1/completions"))
    errors = check.batch_errors("/v1/chat/completions")
    assert [(e["code"], e["line"]) for e in errors] == [("mismatched_endpoint", 3)]
    # the same file as a /v1/completions batch names line 1
    assert check.batch_errors("/v1/completions")[0]["line"] == 1


def test_invalid_body_is_not_a_validation_failure() -> None:
    """A body the endpoint will reject becomes a per-line 400 later, not a failed batch."""
    check = check_of(line("a", body={"model": "small"}), line("b", body="not an object"), line("c", body=None))
    assert check.batch_errors("/v1/chat/completions") == []


def test_missing_custom_id_bad_method_unknown_url_and_too_many_lines() -> None:
    check = check_of(json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}).encode(),
                     line("b", method="GET"), line("c", url="/v1/moderations"), line("d"), max_lines=3)
    codes = [(e["code"], e["line"]) for e in check.errors]
    assert codes == [("missing_required_parameter", 1), ("invalid_method", 2), ("invalid_url", 3),
                     ("too_many_tasks", 4)]


def test_empty_file_fails() -> None:
    assert check_of(b"").batch_errors("/v1/chat/completions")[0]["code"] == "empty_file"


def test_split_lines_numbers_lines_across_chunks() -> None:
    assert list(split_lines([b"a\n\nb", b"c\nd"])) == [(1, b"a"), (3, b"bc"), (4, b"d")]


def test_worst_case_estimate_bounds_prompt_and_completion() -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "héllo"}], "max_tokens": 10}
    assert worst_case_tokens(body, "/v1/chat/completions", 256) == (len("user") + len("héllo".encode()) + 8, 10)
    assert worst_case_tokens({"prompt": "abc"}, "/v1/completions", 256) == (3, 256)
    prices = {"auto": ["tiny-small", "small", "tiny-large", "large"], "small": ["tiny-small", "small"]}
    est = make_estimator(prices, 256)
    tokens, usd_auto = est(body, "/v1/chat/completions")
    _, usd_small = est({**body, "model": "small"}, "/v1/chat/completions")
    assert tokens == 18 + 10 and usd_auto > usd_small > 0  # auto: the dearest pool it may land on
    assert est({**body, "model": "nope"}, "/v1/chat/completions")[1] == 0.0


def test_status_machine() -> None:
    path = ["validating", "in_progress", "finalizing", "completed"]
    assert all(can_transition(a, b) for a, b in itertools.pairwise(path))
    assert can_transition("validating", "failed") and can_transition("in_progress", "expired")
    assert can_transition("in_progress", "cancelling") and can_transition("cancelling", "cancelled")
    assert not can_transition("completed", "in_progress") and not can_transition("validating", "completed")
    assert not can_transition("cancelling", "completed")
    assert all(not can_transition(t, s) for t in TERMINAL for s in ("in_progress", "cancelling"))
    assert set(sources("cancelling")) == {"validating", "in_progress", "finalizing"}
    with pytest.raises(InvalidRequestError):
        check_cancellable("completed", "batch_x")
    check_cancellable("in_progress", "batch_x")


def test_completion_window_and_metadata() -> None:
    assert window_seconds("24h", 86400) == 86400
    assert window_seconds("90s", 86400) == 90
    for bad in ("", "24", "0h", "2d", "1w"):
        with pytest.raises(InvalidRequestError):
            window_seconds(bad, 86400)
    assert check_metadata({"a": "b"}) == {"a": "b"}
    with pytest.raises(InvalidRequestError):
        check_metadata({f"k{i}": "v" for i in range(17)})


def test_objects_parse_as_the_official_sdk_types() -> None:
    h = {"id": "batch_1", "endpoint": "/v1/chat/completions", "input_file_id": "file-1", "completion_window": "24h",
         "status": "failed", "created_at": "100", "failed_at": "101", "expires_at": "86500", "total": "3",
         "errors": json.dumps([{"code": "invalid_json_line", "line": 2, "message": "m", "param": None}]),
         "metadata": json.dumps({"k": "v"})}
    batch = Batch.model_validate(batch_object(h))
    assert batch.errors.data[0].line == 2 and batch.request_counts.total == 3 and batch.failed_at == 101
    f = FileObject.model_validate(file_object({"id": "file-1", "bytes": "5", "created_at": "1", "filename": "x",
                                               "purpose": "batch"}))
    assert f.bytes == 5 and f.object == "file"
    out = output_line("c1", 200, {"x": 1})
    assert set(out) == {"id", "custom_id", "response", "error"} and out["response"]["status_code"] == 200
