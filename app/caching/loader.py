"""Pick the verifier the config asks for."""

from __future__ import annotations

import logging
from typing import Any

from app.caching.settings import CacheConfig

logger = logging.getLogger(__name__)


def load_verifier(cfg: CacheConfig) -> Any | None:
    if not (cfg.semantic_enabled and cfg.verifier_enabled):
        return None
    from app.caching.cross_encoder import DEFAULT_DIR, CrossEncoderVerifier
    from app.caching.verifier import PairVerifier

    if cfg.verifier == "cross-encoder":
        return CrossEncoderVerifier(DEFAULT_DIR)
    return PairVerifier.load()
