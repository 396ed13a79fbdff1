"""Semantic-cache operating points: ``strict`` (precision first, the default) and ``balanced``.

A level is a (cosine gate, verifier threshold) pair. ``strict`` is the configured
``similarity_threshold`` and ``verifier_threshold`` (or the artifact's threshold); ``balanced``
lowers both to the values in ``CacheConfig.balanced_*`` and always applies the one-slot veto
(``slots.py``), which is what makes the lower threshold safe against look-alikes; the values were
chosen by ``llmgw cache eval`` on calibration data disjoint from every reported set (docs/cache.md
has the measured curve). A tenant
picks its level with the tenant record option ``cache.strictness``, sent as ``CacheQuery.strictness``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.caching.settings import CacheConfig

LEVELS = ("strict", "balanced")


@dataclass(frozen=True)
class OperatingPoint:
    gate: float  # cosine similarity a candidate needs before verification
    threshold: float | None  # verifier P(same) needed; None: the verifier artifact's own threshold
    slot_veto: bool = False  # refuse one-slot edits (slots.py) before the verifier


def operating_point(cfg: CacheConfig, strictness: str | None = None,
                    artifact_threshold: float | None = None) -> OperatingPoint:
    """The level's gate and threshold; an unknown or missing level means the configured default."""
    level = strictness if strictness in LEVELS else cfg.strictness
    strict = OperatingPoint(cfg.similarity_threshold,
                            cfg.verifier_threshold if cfg.verifier_threshold is not None else artifact_threshold,
                            cfg.slot_veto_strict)
    if level == "strict":
        return strict
    # balanced never asks for more than strict does, whatever the config says
    threshold = cfg.balanced_verifier_threshold
    if strict.threshold is not None:
        threshold = min(threshold, strict.threshold)
    return OperatingPoint(min(cfg.balanced_similarity_threshold, strict.gate), threshold, True)
