"""Evaluation settings (``GatewayConfig.evaluation``): the judge model and online scoring."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.resilience.settings import ProviderConfig

DEFAULT_CRITERIA = ["correctness", "helpfulness", "instruction_following"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JudgeConfig(_Strict):
    """An LLM-as-judge: a provider reached through the gateway's own wire clients."""

    provider: ProviderConfig
    criteria: list[str] = Field(default_factory=lambda: list(DEFAULT_CRITERIA), min_length=1)
    max_tokens: int = Field(300, ge=16)
    max_answer_chars: int = Field(8000, ge=100)  # longer inputs/answers are cut before judging


class OnlineEvalConfig(_Strict):
    """A sampled share of production answers scored by the judge after they were served."""

    enabled: bool = False
    sample_rate: float = Field(0.05, ge=0.0, le=1.0)
    max_concurrency: int = Field(2, ge=1)  # judge calls in flight per replica; beyond it a sample is skipped


class EvaluationConfig(_Strict):
    judge: JudgeConfig | None = None
    online: OnlineEvalConfig = Field(default_factory=OnlineEvalConfig)
