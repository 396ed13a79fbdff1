"""Router policy: features, curve maths, the bundled artifact, and failure behaviour."""

import json
from pathlib import Path

import numpy as np
import pytest

from app.routing.classifier import DEFAULT_ARTIFACT, RouterClassifier, RouterUnavailable
from app.routing.evaluate import evaluate_router, threshold_for_share
from app.routing.features import FEATURE_NAMES, structural_features
from app.routing.train import split_indices


def test_structural_features_see_shape() -> None:
    plain = structural_features("What is the capital of France?")
    mcq = structural_features("Which is renewable?\nA. Wood\nB. Oil\nC. Gas\nD. Coal\nAnswer:")
    maths = structural_features("If 3x + 5 = 20 and y = 2x - 1, what is 4y / 2?")
    assert plain.shape == (len(FEATURE_NAMES),) and plain.dtype == np.float32
    i = FEATURE_NAMES.index
    assert mcq[i("has_options")] == 1.0 and plain[i("has_options")] == 0.0
    assert maths[i("math_symbols_per_char")] > plain[i("math_symbols_per_char")]
    assert maths[i("numbers_per_word")] > 0 and plain[i("numbers_per_word")] == 0


def test_curve_maths_oracle_random_and_inverse() -> None:
    rng = np.random.default_rng(0)
    small = rng.random(4000) < 0.6
    large = small | (rng.random(4000) < 0.5)
    gain = large.astype(float) - small.astype(float)
    oracle = evaluate_router(gain + rng.random(4000) * 1e-3, small, large)
    random = evaluate_router(rng.random(4000), small, large)
    inverse = evaluate_router(-gain, small, large)
    assert oracle.apgr > 0.9 and oracle.share_for_pgr80 < 0.4
    assert abs(random.apgr - 0.5) < 0.05
    assert inverse.apgr < 0.3
    assert oracle.points[0].large_share == 0.0 and oracle.points[-1].large_share == 1.0
    assert oracle.points[-1].pgr == pytest.approx(1.0)
    assert np.mean(rng.random(4000) >= threshold_for_share(rng.random(4000), 0.3)) == pytest.approx(0.3, abs=0.03)


def test_split_is_deterministic_disjoint_and_grouped() -> None:
    groups = [f"g{i % 10}" for i in range(1000)]
    tr, te = split_indices(groups, 0)
    tr2, te2 = split_indices(groups, 0)
    assert (tr == tr2).all() and (te == te2).all() and not set(tr) & set(te)
    assert len(te) == 200
    gtr, gte = split_indices(groups, 0, by_group=True)
    assert not {groups[i] for i in gtr} & {groups[i] for i in gte}


def test_bundled_artifact_loads_and_scores() -> None:
    """Its quality is measured on held-out data in test_routing_quality.py, not read from its metadata."""
    clf = RouterClassifier.load()
    emb = np.random.default_rng(1).normal(size=384).astype(np.float32)
    emb /= np.linalg.norm(emb)
    score = clf.score("Solve 12 * (3 + 4) and explain each step.", emb)
    assert 0.0 <= score <= 1.0
    pool, s = clf.decide("hello", emb, threshold=0.0)
    assert pool == "large" and 0.0 <= s <= 1.0
    assert clf.decide("hello", emb, threshold=1.01)[0] == "small"


def test_missing_or_corrupt_artifact_raises_router_unavailable(tmp_path: Path) -> None:
    with pytest.raises(RouterUnavailable):
        RouterClassifier.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RouterUnavailable):
        RouterClassifier.load(bad)
    artifact = json.loads(DEFAULT_ARTIFACT.read_text())
    artifact["structural_features"] = ["other"]
    drifted = tmp_path / "drift.json"
    drifted.write_text(json.dumps(artifact))
    with pytest.raises(RouterUnavailable):
        RouterClassifier.load(drifted)
