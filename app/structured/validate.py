"""The gateway's own check of a structured answer: parse the final text, validate it (draft 2020-12).

Pure functions: the generate stage validates the final text, re-asks once with the errors
(:func:`reask_messages`) and answers 502 ``json_schema_validation_failed`` if the second answer
fails too. A ``finish_reason: length`` answer stays a 200 (as OpenAI's) with verdict ``truncated``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator

from app.errors import UpstreamError

VerdictName = Literal["valid", "invalid", "truncated"]
HEADER = "x-llmgw-schema"
MAX_ERRORS = 5


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: VerdictName
    errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"


def schema_of(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON Schema a response_format asks for ({"type": "object"} for json_object; None for text)."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {}
    return None


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(p) for p in path) if path else "/"


def validate_text(text: str, schema: dict[str, Any], finish_reason: str | None = None) -> Verdict:
    """Validate ``text`` as JSON against ``schema``; a ``length`` finish is ``truncated`` when it fails."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        errors = [f"the answer is not valid JSON: {exc}"[:300]]
    else:
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [f"at {_pointer(e.absolute_path)}: {e.message}"[:300]
                  for e in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))[:MAX_ERRORS]]
    if not errors:
        return Verdict("valid")
    return Verdict("truncated" if finish_reason == "length" else "invalid", errors)


def validate_arguments(arguments: str, parameters: dict[str, Any] | None) -> Verdict:
    """A tool call's ``arguments`` against its function's ``parameters`` schema."""
    return validate_text(arguments, parameters or {"type": "object"})


def reask_messages(messages: list[dict[str, Any]], text: str, errors: list[str]) -> list[dict[str, Any]]:
    """The history plus the invalid answer and a user turn quoting the validator's errors."""
    listed = "\n".join(f"- {e}" for e in errors[:MAX_ERRORS])
    return [*messages, {"role": "assistant", "content": text},
            {"role": "user", "content": "Your answer does not match the required JSON Schema:\n" + listed +
             "\nReply again with only the corrected JSON."}]


def validation_failed(errors: list[str]) -> UpstreamError:
    """502 after the re-ask also failed (not retryable: the same request would fail the same way)."""
    err = UpstreamError("The model's answer did not match the requested JSON Schema after one re-ask: "
                        + "; ".join(errors[:3]), code="json_schema_validation_failed")
    err.retryable = False
    return err
