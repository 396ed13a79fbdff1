"""Labelled prompt sets beyond MMLU/GSM8K: RouteLLM's MT-Bench judgements and our hand-written everyday sets.

* MT-Bench (``../shared/data/routing/routellm_mt_bench.jsonl``, third-party, read in place): the
  routed text is the last user turn (what the gateway embeds), ``turns`` the conversation depth;
  label = GPT-4 judged the large model's answer at least ``MT_BENCH_MARGIN`` points better.
* ``app/routing/data/everyday_calibration.jsonl`` (ours): fits the blend and chooses thresholds.
* ``app/routing/data/everyday_eval.jsonl`` (ours): report only, never used to fit or choose anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.embedding import emb_cache_dir
from app.routing.train import REPO, shared_data_dir

DATA_DIR = Path(__file__).resolve().parent / "data"
EVAL_FILE = DATA_DIR / "everyday_eval.jsonl"
CALIBRATION_FILE = DATA_DIR / "everyday_calibration.jsonl"
MT_BENCH_FILE = "routing/routellm_mt_bench.jsonl"
MT_BENCH_MARGIN = 2.0


@dataclass
class LabelledPrompts:
    prompts: list[str]
    large: np.ndarray  # bool: needs the large model
    category: list[str]
    case: list[str]
    turns: list[int]
    groups: list[str] = field(default_factory=list)  # rows of one conversation share a group

    def __len__(self) -> int:
        return len(self.prompts)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; put ../shared/data beside the repo or set LLMGW_SHARED_DATA")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_everyday(path: Path) -> LabelledPrompts:
    rows = _read_jsonl(path)
    return LabelledPrompts(
        prompts=[r["prompt"] for r in rows], large=np.array([bool(r["large"]) for r in rows]),
        category=[r["category"] for r in rows], case=[r.get("case", "typical") for r in rows],
        turns=[int(r.get("turns", 1)) for r in rows], groups=[f"{path.stem}:{i}" for i in range(len(rows))],
    )


def load_mt_bench(margin: float = MT_BENCH_MARGIN) -> LabelledPrompts:
    rows = _read_jsonl(shared_data_dir() / MT_BENCH_FILE)
    return LabelledPrompts(
        prompts=[r["user_turns"][-1] for r in rows],
        large=np.array([float(r["large_score"]) - float(r["small_score"]) >= margin for r in rows]),
        category=[r["category"] for r in rows], case=["mt_bench"] * len(rows),
        turns=[int(r["turn"]) for r in rows], groups=[f"mt:{r['question_id']}" for r in rows],
    )


def embed_texts_cached(texts: list[str], tag: str) -> np.ndarray:
    """MiniLM vectors of ``texts``, cached in .cache/emb by content hash (never recomputed)."""
    sha = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    cache = emb_cache_dir(REPO) / f"{tag}-{sha}.npy"
    if cache.exists():
        return np.load(cache)
    from app.embedding import get_embedder

    vectors = get_embedder().encode([t[:4000] for t in texts], batch_size=32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def routellm_vectors(prompts: list[str], sha: str, idx: np.ndarray) -> np.ndarray:
    """MiniLM vectors of RouteLLM prompts ``idx``: sliced from the full cache when ``llmgw router train --v1``
    built it, else embedded (and cached) for just these prompts."""
    full = emb_cache_dir(REPO) / f"routing-{sha[:16]}.npy"
    if full.exists():
        return np.load(full)[idx]
    return embed_texts_cached([prompts[i] for i in idx], "routellm-subset")


REPORT_SAMPLE = 600  # RouteLLM test-split prompts the APGR is reported on
BLEND_SAMPLE = 300  # other test-split prompts the blend is fitted on (the base MLP never saw either)


def routellm_test_parts(groups: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint fixed random parts of the held-out test split: (report sample, blend-fitting sample).

    The base MLP was trained on the train split, so its scores are honest on both; the blend is fitted
    on the second part and reported on the first.
    """
    from app.routing.train import split_indices

    _, test = split_indices(groups, seed)
    order = np.random.default_rng(seed + 7).permutation(test)
    return np.sort(order[:REPORT_SAMPLE]), np.sort(order[REPORT_SAMPLE:REPORT_SAMPLE + BLEND_SAMPLE])

