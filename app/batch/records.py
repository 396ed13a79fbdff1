"""Redis hashes <-> OpenAI objects (File, Batch, async job) and the output/error line format."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from app.errors import InvalidRequestError

BATCH_TIMESTAMPS = ("in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
                    "cancelling_at", "cancelled_at")
_WINDOW = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _int(value: str | None) -> int | None:
    return int(float(value)) if value not in (None, "") else None


def window_seconds(window: str, max_s: int) -> int:
    """``24h`` (OpenAI's value), or any ``<N>s|m|h|d`` up to ``max_s``."""
    m = _WINDOW.match(window or "")
    seconds = int(m.group(1)) * _UNIT[m.group(2)] if m else 0
    if not 0 < seconds <= max_s:
        raise InvalidRequestError(f"Invalid completion_window {window!r}: use '24h' (or <N>s|m|h|d up to "
                                  f"{max_s} s).", param="completion_window")
    return seconds


def check_metadata(metadata: Any) -> dict[str, str] | None:
    """OpenAI's metadata rules: at most 16 string pairs, keys <= 64 and values <= 512 characters."""
    if metadata is None:
        return None
    if (not isinstance(metadata, dict) or len(metadata) > 16
            or any(not isinstance(k, str) or not isinstance(v, str) or len(k) > 64 or len(v) > 512
                   for k, v in metadata.items())):
        raise InvalidRequestError("metadata must map at most 16 keys (<= 64 chars) to strings (<= 512 chars).",
                                  param="metadata")
    return metadata


def file_object(h: dict[str, str]) -> dict[str, Any]:
    return {
        "id": h["id"],
        "object": "file",
        "bytes": int(h.get("bytes") or 0),
        "created_at": int(h["created_at"]),
        "filename": h.get("filename", ""),
        "purpose": h.get("purpose", "batch"),
        "status": h.get("status", "processed"),
        "expires_at": _int(h.get("expires_at")),
        "status_details": h.get("status_details") or None,
    }


def batch_object(h: dict[str, str]) -> dict[str, Any]:
    errors = json.loads(h["errors"]) if h.get("errors") else None
    obj: dict[str, Any] = {
        "id": h["id"],
        "object": "batch",
        "endpoint": h["endpoint"],
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": h["input_file_id"],
        "completion_window": h["completion_window"],
        "status": h["status"],
        "output_file_id": h.get("output_file_id") or None,
        "error_file_id": h.get("error_file_id") or None,
        "created_at": int(h["created_at"]),
        **{name: _int(h.get(name)) for name in BATCH_TIMESTAMPS},
        "request_counts": {"total": int(h.get("total") or 0), "completed": int(h.get("completed") or 0),
                           "failed": int(h.get("failed") or 0)},
        "metadata": json.loads(h["metadata"]) if h.get("metadata") else None,
    }
    return obj


def job_object(h: dict[str, str]) -> dict[str, Any]:
    """An async single request: ``response`` holds ``{status_code, body}`` once it finished."""
    done = h.get("status") in ("completed", "failed")
    return {
        "id": h["id"],
        "object": "async.request",
        "endpoint": h.get("endpoint"),
        "status": h.get("status"),
        "created_at": int(h["created_at"]),
        "started_at": _int(h.get("started_at")),
        "completed_at": _int(h.get("completed_at")),
        "response": ({"status_code": int(h["status_code"]), "body": json.loads(h["body_out"])}
                     if done and h.get("body_out") else None),
        "webhook_url": h.get("webhook_url") or None,
        "webhook_status": h.get("webhook") or None,  # sent | failed | refused (after the request ended)
        "metadata": json.loads(h["metadata"]) if h.get("metadata") else None,
    }


def request_id() -> str:
    return f"req_{secrets.token_hex(16)}"


def output_line(custom_id: str, status_code: int, body: Any) -> dict[str, Any]:
    """OpenAI's batch output line: ``{id, custom_id, response: {status_code, request_id, body}, error}``."""
    return {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
            "response": {"status_code": status_code, "request_id": request_id(), "body": body}, "error": None}


def error_line(custom_id: str, code: str, message: str) -> dict[str, Any]:
    """A line that never got a response (expired, cancelled, failed every attempt)."""
    return {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}
