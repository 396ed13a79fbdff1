"""Regression suites (YAML): cases with inputs, expected elements and judge criteria."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.evaluation.checks import Expectation
from app.evaluation.judge import check_criteria


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class JudgeSpec(_Strict):
    criteria: list[str] | None = None  # None -> the judge config's criteria
    min_score: float | None = Field(None, ge=0.0, le=1.0)  # a case fails below this judge score

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, v: list[str] | None) -> list[str] | None:
        return check_criteria(v) if v is not None else None


class Case(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    variables: dict[str, Any] = Field(default_factory=dict)
    messages: list[Message] = Field(default_factory=list)  # the client's messages after the template's
    expect: Expectation = Field(default_factory=Expectation)
    reference: str | None = None  # what a good answer says (shown to the judge)
    criteria: list[str] | None = None  # overrides the suite's judge criteria
    min_score: float | None = Field(None, ge=0.0, le=1.0)
    judge: bool = True  # False: deterministic checks only

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, v: list[str] | None) -> list[str] | None:
        return check_criteria(v) if v is not None else None


class Suite(_Strict):
    name: str
    prompt: str | None = None  # default "name@version" (--prompt overrides)
    model: str = "auto"  # the model / route sent (--route overrides)
    sampling: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0, "max_tokens": 64})
    judge: JudgeSpec | None = None  # None: no LLM judge for this suite
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        ids = [c.id for c in self.cases]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate case ids: {', '.join(dupes)}")
        allowed = {"temperature", "top_p", "max_tokens", "seed", "stop"}
        if set(self.sampling) - allowed:
            raise ValueError(f"sampling may only set {', '.join(sorted(allowed))}")
        return self


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file; ValueError with the first problem."""
    data = yaml.safe_load(Path(path).read_text())
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{path}: {where}: {first['msg']}") from None


def parse_prompt_spec(spec: str) -> dict[str, Any]:
    """``name@3`` -> version 3; ``name@staging`` -> label; ``name`` -> the default label."""
    name, _, ref = spec.partition("@")
    if not name:
        raise ValueError(f"--prompt {spec!r}: expected NAME@VERSION or NAME@LABEL")
    if not ref:
        return {"name": name}
    return {"name": name, "version": int(ref)} if ref.isdigit() else {"name": name, "label": ref}
