"""Strict parsing of a JSON request body: size, encoding, syntax, shape -> clear 4xx errors."""

from __future__ import annotations

import json
from typing import Any

from app.errors import InvalidRequestError, PayloadTooLargeError


def check_content_length(header: str | None, max_bytes: int) -> None:
    if header is None:
        return
    try:
        size = int(header)
    except ValueError:
        raise InvalidRequestError("Invalid Content-Length header.") from None
    if size > max_bytes:
        raise PayloadTooLargeError(f"Request body is {size} bytes; the limit is {max_bytes} bytes.")


def parse_json_object(raw: bytes, max_bytes: int) -> dict[str, Any]:
    """Decode ``raw`` as a UTF-8 JSON object or raise a 400/413 GatewayError."""
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(f"Request body is {len(raw)} bytes; the limit is {max_bytes} bytes.")
    if not raw.strip():
        raise InvalidRequestError("Request body is empty; expected a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"Request body is not valid UTF-8 (byte {exc.start}).") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"Request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequestError("Request body must be a JSON object.")
    return body
