"""Score the shipped injection classifier on its held-out splits with this process's embedding backend.

    LLMGW_EMBED_BACKEND=onnx-int8 nice -n 19 .venv/bin/python -m app.guardrails.training.rescore

For re-validating an embedding change without retraining: the same splits, scoring and threshold as
``train_injection`` (whole texts, the artifact's threshold), printed beside the figures stored in the artifact
when it was trained (full-precision vectors). Nothing is chosen here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from app.embedding import embed_backend
from app.guardrails.injection import DEFAULT_ARTIFACT, InjectionClassifier
from app.guardrails.training.data import embed_cached, load_splits
from app.guardrails.training.metrics import flip_rate, rates_at
from app.guardrails.training.suffixes import EVAL_SUFFIXES


def rescore(artifact: Path = DEFAULT_ARTIFACT, seed: int = 13) -> dict:
    clf = InjectionClassifier.load(artifact)
    splits = load_splits(seed)
    out: dict = {"backend": embed_backend(), "threshold": clf.threshold}
    for name in ("validation", "test", "test_neuralchemy"):
        split = splits[name]
        scores = clf.score_texts(split.texts, embed_cached(split.texts, name))
        tpr, fpr = rates_at(scores, np.asarray(split.labels), clf.threshold)
        out[name] = {"rows": len(split.texts), "tpr": round(tpr, 4), "fpr": round(fpr, 4),
                     "artifact": clf.metadata.get(name)}
    out["test_suffix_flip_rate"] = round(flip_rate(clf, splits["test"], EVAL_SUFFIXES), 4)
    out["artifact_test_suffix_flip_rate"] = clf.metadata.get("test_suffix_flip_rate")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    print(json.dumps(rescore(args.artifact, args.seed), indent=1))


if __name__ == "__main__":
    main()
