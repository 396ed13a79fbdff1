"""Train the injection pre-screen (n-grams + pattern hits, no embedding) and choose its clearing threshold.

    nice -n 19 .venv/bin/python -m app.guardrails.training.train_prescreen

Logistic regression on the same augmented training rows as the full classifier, without the MiniLM part.
Both choices are made on the validation split only, at run-time scoring (whole text and sentences, the
maximum counts): the threshold is the lowest pre-screen logit such that at most ``--budget`` of the
validation injections the full classifier detects would be cleared; C is the one that then clears the
most benign validation prompts. The test splits are scored once, after the choice; their figures (TPR/FPR
with and without the pre-screen, the share of benign prompts that skip the embedding) go in the metadata.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from app.guardrails.injection import InjectionClassifier, segments
from app.guardrails.injection_features import FEATURE_SPEC, ngram_matrix, pattern_vector
from app.guardrails.prescreen import DEFAULT_PRESCREEN, Prescreen, SegmentFeatures, save_prescreen
from app.guardrails.training.data import Split, embed_cached, load_splits
from app.guardrails.training.train_injection import augment

VERSION = "injection-prescreen-v1"


def cheap_design(texts: list[str]):
    from scipy.sparse import csr_matrix, hstack

    return hstack([ngram_matrix(texts), csr_matrix(np.stack([pattern_vector(t) for t in texts]))]).tocsr()


class RunTimeScores:
    """One split at run-time scoring: its segments' features, and the full classifier's score per text."""

    def __init__(self, split: Split, clf: InjectionClassifier) -> None:
        self.labels = np.asarray(split.labels)
        self.parts = [segments(t) for t in split.texts]
        self.features = [[SegmentFeatures.of(p) for p in parts] for parts in self.parts]
        flat = [p for parts in self.parts for p in parts]
        vectors = embed_cached(flat, split.name + "-segments")
        full, at = [], 0
        for parts, feats in zip(self.parts, self.features, strict=True):
            full.append(float(clf.score_texts(parts, vectors[at:at + len(parts)], feats).max()))
            at += len(parts)
        self.full = np.asarray(full)

    def prescreen_logits(self, screen: Prescreen) -> np.ndarray:
        return np.asarray([screen.logits(f).max() for f in self.features])

    def report(self, screen: Prescreen, threshold: float) -> dict[str, float]:
        cleared = self.prescreen_logits(screen) < screen.threshold
        pos, neg = self.labels == 1, self.labels == 0
        flagged = self.full >= threshold
        with_screen = flagged & ~cleared
        return {"rows": len(self.labels), "tpr": round(float(flagged[pos].mean()), 4),
                "tpr_prescreened": round(float(with_screen[pos].mean()), 4),
                "fpr": round(float(flagged[neg].mean()), 4),
                "fpr_prescreened": round(float(with_screen[neg].mean()), 4),
                "benign_cleared": round(float(cleared[neg].mean()), 4),
                "detections_lost": int((flagged & cleared)[pos].sum()), "detections": int(flagged[pos].sum())}


def clearing_threshold(logits: np.ndarray, detected: np.ndarray, budget: float) -> float:
    """The lowest logit that clears at most ``budget`` of the detected injections (strictly below clears)."""
    lows = np.sort(logits[detected])
    return float(lows[min(math.floor(budget * len(lows)), len(lows) - 1)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_PRESCREEN)
    parser.add_argument("--budget", type=float, default=0.0025,
                        help="share of the full classifier's validation detections the pre-screen may clear")
    parser.add_argument("--augment-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    t0 = time.time()
    clf = InjectionClassifier.load()
    splits = load_splits(args.seed)
    train = augment(splits["train"], args.seed, args.augment_share)
    x_train, y_train = cheap_design(train.texts), np.asarray(train.labels)
    val = RunTimeScores(splits["validation"], clf)
    detected = (val.labels == 1) & (val.full >= clf.threshold)
    print(f"features ready in {time.time() - t0:.0f}s; validation detections {int(detected.sum())}", flush=True)
    header = {"features": FEATURE_SPEC, "version": VERSION, "threshold": 0.0}
    best = None
    for c in (1.0, 3.0, 10.0, 30.0):
        model = LogisticRegression(C=c, max_iter=3000, solver="liblinear").fit(x_train, y_train)
        w = model.coef_[0].astype(np.float32)
        n_pat = len(FEATURE_SPEC["patterns"])
        arrays = {"ngram_weight": w[:-n_pat], "pattern_weight": w[-n_pat:],
                  "bias": np.asarray(model.intercept_, dtype=np.float32)}
        logits = val.prescreen_logits(Prescreen(arrays, header))
        tau = clearing_threshold(logits, detected, args.budget)
        cleared = float((logits[val.labels == 0] < tau).mean())
        print(f"C={c}: clears {cleared:.3f} of benign validation prompts (threshold logit {tau:.3f})", flush=True)
        if best is None or cleared > best[0]:
            best = (cleared, c, arrays, tau)
    _, c, arrays, tau = best
    if 1.0 / (1.0 + math.exp(-tau)) >= clf.threshold:
        raise SystemExit("the chosen threshold would clear texts the classifier flags; raise --budget's strictness")
    header = {**header, "threshold": tau, "classifier": clf.version, "classifier_threshold": clf.threshold}
    screen = Prescreen(arrays, header)
    metadata: dict = {"C": c, "budget": args.budget, "train_rows": len(train.texts)}
    for name in ("validation", "test", "test_neuralchemy"):
        scores = val if name == "validation" else RunTimeScores(splits[name], clf)
        metadata[name] = scores.report(screen, clf.threshold)
        print(name, metadata[name], flush=True)
    save_prescreen(args.out, arrays, {**header, "metadata": metadata})
    print(json.dumps(metadata, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB) in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
