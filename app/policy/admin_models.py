"""Validated bodies of the admin API (extra fields refused, so a typo is a 400, not a silent no-op)."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.policy.tenants import TENANT_RE


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyLimits(_Body):
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    budget_daily_usd: float | None = Field(None, ge=0)
    budget_monthly_usd: float | None = Field(None, ge=0)


class KeyCreate(KeyLimits):
    tenant: str
    name: str = Field("", max_length=200)
    models: list[str] = Field(default_factory=list)  # deny by default: [] may call nothing, ["*"] everything
    expires_at: float | None = None  # epoch seconds
    expires_in_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> KeyCreate:
        if not TENANT_RE.match(self.tenant):
            raise ValueError("tenant must match [A-Za-z0-9_.-]{1,64}")
        if self.expires_in_s is not None:
            if self.expires_at is not None:
                raise ValueError("give expires_at or expires_in_s, not both")
            self.expires_at = time.time() + self.expires_in_s
        return self


class KeyUpdate(KeyLimits):
    """PATCH: only the fields present change (``null`` clears a limit)."""

    name: str | None = Field(None, max_length=200)
    models: list[str] | None = None
    expires_at: float | None = None


class RotateRequest(_Body):
    overlap_s: float | None = Field(None, ge=0)  # None: policy.rotate_overlap_s
