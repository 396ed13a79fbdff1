"""Registry records: names, namespaces, immutable versions, label events."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from app.errors import InvalidRequestError
from app.prompts.template import PromptTemplate

GLOBAL = "@global"  # the shared namespace; "@" is not allowed in tenant names, so no tenant can own it
LATEST = "latest"  # a computed label: the newest version (cannot be set)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Labels start with a letter, so a label can never read as a version number.
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def check_name(name: Any, what: str = "prompt name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequestError(f"Invalid {what} {name!r}: letters, digits, '_', '.', '-' (at most 128).",
                                  param="name")
    return name


def check_label(label: Any, *, settable: bool = False) -> str:
    if not isinstance(label, str) or not _LABEL.match(label):
        hint = " (an all-digit label would collide with version numbers)" if str(label).isdigit() else ""
        raise InvalidRequestError(f"Invalid label {label!r}: it must start with a letter{hint}.", param="label")
    if settable and label == LATEST:
        raise InvalidRequestError("'latest' always points at the newest version; it cannot be set.",
                                  param="label")
    return label


def check_version(version: Any) -> int:
    """A version number: a positive int (or its decimal string)."""
    if isinstance(version, bool):
        version = None
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if not isinstance(version, int) or version < 1:
        raise InvalidRequestError(f"Invalid version {version!r}: a positive integer (use 'label' for labels).",
                                  param="version")
    return version


def namespace(tenant: str | None) -> str:
    """The namespace a tenant's prompts live in; None -> the shared global namespace."""
    return GLOBAL if tenant in (None, "", GLOBAL) else tenant


@dataclass(slots=True)
class PromptVersion:
    """One immutable version of a prompt."""

    namespace: str
    name: str
    version: int
    template: PromptTemplate
    author: str = ""
    note: str = ""
    created_at: float = field(default_factory=time.time)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["template"] = self.template.model_dump(exclude_none=True)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptVersion:
        return cls(namespace=data["namespace"], name=data["name"], version=int(data["version"]),
                   template=PromptTemplate.model_validate(data["template"]), author=data.get("author", ""),
                   note=data.get("note", ""), created_at=float(data.get("created_at", 0.0)))

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "author": self.author, "note": self.note, "created_at": self.created_at}
