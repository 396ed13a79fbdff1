"""The ``prompt_ref`` request extension: ``{"name", "version" | "label", "variables"}``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidRequestError
from app.prompts.models import check_label, check_name, check_version

_KEYS = {"name", "version", "label", "variables"}


@dataclass(slots=True)
class PromptRef:
    name: str
    version: int | None = None
    label: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)


def parse_prompt_ref(raw: Any) -> PromptRef:
    """Validate the extension; 400 for a bad shape, unknown keys, or both a version and a label."""
    if not isinstance(raw, dict):
        raise InvalidRequestError("'prompt_ref' must be an object {name, version | label, variables}.",
                                  param="prompt_ref")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InvalidRequestError(f"Unknown prompt_ref fields: {', '.join(unknown)}.", param="prompt_ref")
    if raw.get("version") is not None and raw.get("label") is not None:
        raise InvalidRequestError("Give prompt_ref.version or prompt_ref.label, not both.", param="prompt_ref")
    try:
        name = check_name(raw.get("name"))
        version = check_version(raw["version"]) if raw.get("version") is not None else None
        label = check_label(raw["label"]) if raw.get("label") is not None else None
    except InvalidRequestError as exc:
        raise InvalidRequestError(exc.message, param=f"prompt_ref.{exc.param}") from None
    variables = raw.get("variables") or {}
    if not isinstance(variables, dict):
        raise InvalidRequestError("'prompt_ref.variables' must be an object.", param="prompt_ref.variables")
    return PromptRef(name, version, label, variables)
