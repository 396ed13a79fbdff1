"""A/B experiments over a prompt: variants (versions, labels and/or models) chosen by a deterministic hash.

A key (the end user, the tenant or the request) is hashed with the experiment's salt to a point in
[0, 1); the variants' normalised weights split that interval in order, so a key always lands in the
same variant (sticky) and a large population splits as configured. An optional shadow candidate runs
on a hashed sample of requests in the background (``app.prompts.shadow``).
"""

from __future__ import annotations

import hashlib
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.prompts.models import LATEST, check_label

KeyKind = Literal["user", "tenant", "request"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Target(_Strict):
    """What a variant serves: a version or a label of the prompt (default: the experiment's label), and/or a
    model name (a pool, alias or ``auto``) replacing the client's."""

    version: int | None = Field(None, ge=1)
    label: str | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _one_ref(self) -> Target:
        if self.version is not None and self.label is not None:
            raise ValueError("give a version or a label, not both")
        if self.label is not None:
            check_label(self.label)
        return self

    def describe(self) -> str:
        ref = f"v{self.version}" if self.version is not None else (self.label or "")
        return "+".join(p for p in (ref, f"model={self.model}" if self.model else "") if p) or "control"


class Variant(Target):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")
    weight: float = Field(gt=0)


class ShadowSpec(Target):
    sample_rate: float = Field(gt=0.0, le=1.0)
    budget_usd: float = Field(1.0, ge=0.0)  # the shadow runs stop once they have cost this much

    @model_validator(mode="after")
    def _something(self) -> ShadowSpec:
        if self.version is None and self.label is None and self.model is None:
            raise ValueError("a shadow needs a version, a label or a model")
        return self


class ExperimentSpec(_Strict):
    """What ``experiment start`` takes."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    prompt: str
    label: str = "production"  # requests resolving the prompt by this label are split (pinned versions are not)
    key: KeyKind = "user"
    variants: list[Variant] = Field(default_factory=list)
    shadow: ShadowSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        check_label(self.label)
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate variant names: {names}")
        if "shadow" in names:
            raise ValueError("'shadow' is reserved for the shadow candidate")
        if not self.variants and self.shadow is None:
            raise ValueError("an experiment needs variants, a shadow, or both")
        if self.label == LATEST:
            raise ValueError("experiments split a settable label, not 'latest'")
        return self


class Experiment(ExperimentSpec):
    namespace: str
    status: Literal["running", "stopped"] = "running"
    started_at: float = Field(default_factory=time.time)
    stopped_at: float | None = None
    started_by: str = ""

    @property
    def salt(self) -> str:
        return f"{self.namespace}/{self.prompt}/{self.name}"

    def assign(self, key: str) -> Variant | None:
        """The variant ``key`` lands in (None when the experiment has no variants)."""
        return choose(self.variants, bucket(self.salt, key)) if self.variants else None

    def shadow_sampled(self, request_id: str) -> bool:
        return self.shadow is not None and bucket(self.salt + "/shadow", request_id) < self.shadow.sample_rate


def bucket(salt: str, key: str) -> float:
    """A stable point in [0, 1) for ``key`` (SHA-256, the same on every replica and every restart)."""
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose(variants: list[Variant], point: float) -> Variant:
    total = sum(v.weight for v in variants)
    edge = 0.0
    for variant in variants:
        edge += variant.weight / total
        if point < edge:
            return variant
    return variants[-1]  # float rounding at the top edge
