"""vLLM sample logprobs -> OpenAI chat ``logprobs.content`` entries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": max(logprob, -9999.0), "bytes": list(token.encode("utf-8"))}


def openai_logprobs(token_ids: Sequence[int], positions: Any, top: int, decode) -> list[dict[str, Any]]:
    """One entry per generated token: the sampled token, its logprob and the ``top`` most likely ones.

    ``positions``: vLLM's per-token ``{token_id: Logprob}`` maps (sampled token plus the top-k);
    ``decode(token_id) -> str`` for tokens vLLM left undecoded.
    """
    out = []
    for token_id, options in zip(token_ids, positions or (), strict=False):
        chosen = options.get(token_id)
        text = chosen.decoded_token if chosen is not None and chosen.decoded_token is not None else decode(token_id)
        entry = _entry(text, chosen.logprob if chosen is not None else float("-inf"))
        ranked = sorted(options.items(), key=lambda kv: (kv[1].rank or 1 << 30, -kv[1].logprob))[:top]
        entry["top_logprobs"] = [_entry(lp.decoded_token if lp.decoded_token is not None else decode(tid), lp.logprob)
                                 for tid, lp in ranked]
        out.append(entry)
    return out
