"""Strict body parsing: every malformed input becomes a 400/413 GatewayError with a clear message."""

import pytest

from app.errors import InvalidRequestError, PayloadTooLargeError
from app.http_body import check_content_length, parse_json_object


def test_parses_a_json_object() -> None:
    assert parse_json_object(b'{"a": 1, "b": "\xc3\xa9"}', 100) == {"a": 1, "b": "é"}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{oops", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b'"s"', "JSON object"),
        (b'{"a": "\xff"}', "UTF-8"),
    ],
)
def test_rejects_bad_bodies(raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_json_object(raw, 100)
    assert needle in info.value.message
    assert info.value.status_code == 400


def test_size_limits() -> None:
    with pytest.raises(PayloadTooLargeError):
        parse_json_object(b'{"a": "' + b"x" * 200 + b'"}', 100)
    with pytest.raises(PayloadTooLargeError) as info:
        check_content_length("5000", 100)
    assert info.value.status_code == 413
    with pytest.raises(InvalidRequestError):
        check_content_length("abc", 100)
    check_content_length("99", 100)
    check_content_length(None, 100)
