"""Train the injection/jailbreak classifier and write its artifact (``llmgw guardrails train``-style module).

    nice -n 19 .venv/bin/python -m app.guardrails.training.train_injection

Logistic regression over [MiniLM embedding | hashed char n-grams | pattern hits] on the training rows
plus copies with harmless suffixes from TRAIN_SUFFIXES (the evaluation suffixes are never seen). The
regularisation and the threshold are chosen on the validation split only; the test splits are scored
once, after the choice, and their figures stored in the artifact's metadata.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from app.guardrails.injection import DEFAULT_ARTIFACT, InjectionClassifier, save_artifact
from app.guardrails.injection_features import FEATURE_SPEC, ngram_matrix, pattern_vector
from app.guardrails.training.data import Split, embed_cached, load_splits
from app.guardrails.training.metrics import flip_rate, rates_at, threshold_for_fpr
from app.guardrails.training.suffixes import EVAL_SUFFIXES, TRAIN_SUFFIXES

VERSION = "injection-v1"


def augment(split: Split, seed: int, share: float) -> Split:
    """``split`` plus a copy of a random ``share`` of rows with a training suffix appended."""
    rng = random.Random(seed)
    texts, labels, sources = list(split.texts), list(split.labels), list(split.sources)
    for text, label, source in zip(split.texts, split.labels, split.sources, strict=True):
        if rng.random() < share:
            sep = rng.choice([" ", " ", "\n", ". "])
            texts.append(text.rstrip() + sep + rng.choice(TRAIN_SUFFIXES))
            labels.append(label)
            sources.append(source + "+suffix")
    return Split(split.name + "-aug", texts, labels, sources)


def design(texts: list[str], embeddings: np.ndarray):
    from scipy.sparse import csr_matrix, hstack

    patterns = np.stack([pattern_vector(t) for t in texts])
    return hstack([csr_matrix(embeddings.astype(np.float32)), ngram_matrix(texts), csr_matrix(patterns)]).tocsr()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--target-fpr", type=float, default=0.02, help="validation FPR the threshold is set for")
    parser.add_argument("--augment-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    t0 = time.time()
    splits = load_splits(args.seed)
    train = augment(splits["train"], args.seed, args.augment_share)
    val = splits["validation"]
    x_train = design(train.texts, embed_cached(train.texts, "train-aug"))
    y_train = np.asarray(train.labels)
    x_val = design(val.texts, embed_cached(val.texts, "validation"))
    y_val = np.asarray(val.labels)
    print(f"features ready in {time.time() - t0:.0f}s: train {x_train.shape}, validation {x_val.shape}", flush=True)

    best = None
    for c in (1.0, 3.0, 10.0, 30.0):
        model = LogisticRegression(C=c, max_iter=3000, solver="liblinear")
        model.fit(x_train, y_train)
        scores = model.predict_proba(x_val)[:, 1]
        thr = threshold_for_fpr(scores, y_val, args.target_fpr)
        tpr, fpr = rates_at(scores, y_val, thr)
        print(f"C={c}: validation TPR {tpr:.3f} at FPR {fpr:.3f} (threshold {thr:.3f})", flush=True)
        if best is None or tpr > best[0]:
            best = (tpr, c, model, thr)
    _, c, model, thr = best
    weights = model.coef_[0].astype(np.float32)
    n_emb, n_ngram = 384, FEATURE_SPEC["ngram_dim"]
    arrays = {"embedding_weight": weights[:n_emb], "ngram_weight": weights[n_emb:n_emb + n_ngram],
              "pattern_weight": weights[n_emb + n_ngram:], "bias": np.asarray(model.intercept_, dtype=np.float32)}
    clf = InjectionClassifier(arrays, {"version": VERSION, "threshold": thr, "features": FEATURE_SPEC})

    metadata: dict = {"C": c, "target_validation_fpr": args.target_fpr, "train_rows": len(train.texts),
                      "train_rows_before_augmentation": len(splits["train"].texts)}
    for name in ("validation", "test", "test_neuralchemy"):
        split = splits[name]
        scores = clf.score_texts(split.texts, embed_cached(split.texts, name))
        tpr, fpr = rates_at(scores, np.asarray(split.labels), thr)
        metadata[name] = {"rows": len(split.texts), "tpr": round(tpr, 4), "fpr": round(fpr, 4)}
        print(f"{name}: TPR {tpr:.3f} FPR {fpr:.3f}", flush=True)
    test = splits["test"]
    flips = flip_rate(clf, test, EVAL_SUFFIXES)
    metadata["test_suffix_flip_rate"] = round(flips, 4)
    print(f"test suffix-flip rate {flips:.3f}", flush=True)
    save_artifact(args.out, arrays, {"version": VERSION, "threshold": thr, "features": FEATURE_SPEC,
                                     "metadata": metadata})
    print(json.dumps(metadata, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB) in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
