"""Inference engines a model pool can drive (no Ray import here).

``vllm``: vLLM's in-process ``AsyncLLM`` (continuous batching, streaming, abort on cancel).
``echo``: an instant engine for measuring gateway overhead in benchmarks only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import PoolConfig
    from app.engines.base import Engine


def create_engine(pool: PoolConfig) -> Engine:
    if pool.engine_kind == "echo":
        from app.engines.echo_engine import EchoEngine

        return EchoEngine(pool)
    from app.engines.vllm_engine import VLLMEngine

    return VLLMEngine(pool)
