"""JSONL validation of a batch input file, streamed chunk by chunk as it is uploaded.

Fatal problems fail the whole batch naming the line (OpenAI's ``errors.data[].line``): a line that is
not a JSON object, a missing/duplicate ``custom_id``, a method other than POST, an unsupported url,
too many lines. A line whose ``body`` is invalid is *not* fatal: it becomes a 400 for that line in the
error file when the worker runs it. Line numbers are 1-based; blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_ERRORS = 100  # errors.data keeps the first ones
MAX_CUSTOM_ID = 512

# (body, url) -> (worst-case tokens, worst-case USD) of one line
Estimator = Callable[[Any, str], tuple[int, float]]


@dataclass
class FileCheck:
    """What validation learnt about a file: enough to accept or fail a batch without reading it again."""

    lines: int = 0
    max_line: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    urls: dict[str, int] = field(default_factory=dict)  # url -> first line using it
    worst_tokens: int = 0
    worst_usd: float = 0.0

    def error(self, code: str, line: int | None, message: str, param: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "line": line, "message": message, "param": param})

    def batch_errors(self, endpoint: str) -> list[dict[str, Any]]:
        """The fatal errors of a batch of this file on ``endpoint`` (empty: the batch may start)."""
        errors = list(self.errors)
        if self.lines == 0 and not errors:
            errors.append({"code": "empty_file", "line": None, "message": "The input file has no requests.",
                           "param": None})
        for url, line in sorted(self.urls.items(), key=lambda kv: kv[1]):
            if url != endpoint:
                errors.append({"code": "mismatched_endpoint", "line": line, "param": "url",
                               "message": f"Line {line}: url {url!r} does not match the batch endpoint "
                                          f"{endpoint!r}."})
        return errors[:MAX_ERRORS]

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "max_line": self.max_line, "errors": self.errors, "urls": self.urls,
                "worst_tokens": self.worst_tokens, "worst_usd": self.worst_usd}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileCheck:
        return cls(**data)


def split_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of every non-blank line of a file given as byte chunks."""
    splitter = LineSplitter()
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


class LineSplitter:
    """Incremental splitter on b"\\n" that numbers lines and drops blank ones."""

    def __init__(self) -> None:
        self._rest = b""
        self._line = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        data = self._rest + chunk
        *lines, self._rest = data.split(b"\n")
        for raw in lines:
            self._line += 1
            if raw.strip():
                yield self._line, raw

    def finish(self) -> Iterator[tuple[int, bytes]]:
        rest, self._rest = self._rest, b""
        if rest.strip():
            self._line += 1
            yield self._line, rest


def parse_line(raw: bytes) -> dict[str, Any]:
    """One input line as a dict (raises ValueError with the reason)."""
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


class LineValidator:
    """Feed the uploaded bytes in chunks; ``finish()`` returns the :class:`FileCheck`."""

    def __init__(self, max_lines: int, estimate: Estimator | None = None) -> None:
        self.max_lines = max_lines
        self.estimate = estimate
        self.check = FileCheck()
        self._splitter = LineSplitter()
        self._ids: set[str] = set()

    def feed(self, chunk: bytes) -> None:
        for line_no, raw in self._splitter.feed(chunk):
            self._line(line_no, raw)

    def finish(self) -> FileCheck:
        for line_no, raw in self._splitter.finish():
            self._line(line_no, raw)
        return self.check

    def _line(self, line_no: int, raw: bytes) -> None:
        check = self.check
        check.lines += 1
        check.max_line = line_no
        if check.lines == self.max_lines + 1:
            check.error("too_many_tasks", line_no, f"Line {line_no}: a batch holds at most {self.max_lines} "
                                                   "requests.")
        try:
            obj = parse_line(raw)
        except ValueError as exc:
            check.error("invalid_json_line", line_no, f"Line {line_no} is {exc}.")
            return
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
            check.error("missing_required_parameter", line_no,
                        f"Line {line_no}: custom_id must be a non-empty string of at most {MAX_CUSTOM_ID} "
                        "characters.", "custom_id")
        elif custom_id in self._ids:
            check.error("duplicate_custom_id", line_no, f"Line {line_no}: duplicate custom_id {custom_id!r}.",
                        "custom_id")
        else:
            self._ids.add(custom_id)
        if obj.get("method", "POST") != "POST":
            check.error("invalid_method", line_no, f"Line {line_no}: method must be POST.", "method")
        url = obj.get("url")
        if url not in SUPPORTED_ENDPOINTS:
            check.error("invalid_url", line_no, f"Line {line_no}: url must be one of "
                                                f"{', '.join(SUPPORTED_ENDPOINTS)}.", "url")
            return
        check.urls.setdefault(url, line_no)
        if self.estimate is not None:
            tokens, usd = self.estimate(obj.get("body"), url)
            check.worst_tokens += tokens
            check.worst_usd += usd
