"""The bundled router beats random routing on held-out real data (skipped without ../shared/data)."""

import numpy as np
import pytest

from app.routing.train import shared_data_dir


@pytest.mark.skipif(not (shared_data_dir() / "routing").exists(), reason="../shared/data not present")
def test_router_beats_random_on_held_out_prompts() -> None:
    from app.embedding import get_embedder
    from app.routing.classifier import RouterClassifier
    from app.routing.evaluate import evaluate_router
    from app.routing.features import feature_matrix
    from app.routing.train import load_dataset, split_indices

    clf = RouterClassifier.load()
    data = load_dataset()
    # the split below is held out only if this is the file the artifact was trained on (hash computed here)
    assert data.sha256 == clf.metadata["data_sha256"], "routing data changed since training: retrain"
    _, test = split_indices(data.groups, clf.metadata["split"]["seed"])
    sample = np.random.default_rng(0).choice(test, 600, replace=False)  # embedding 600 prompts takes seconds
    prompts = [data.prompts[i] for i in sample]
    scores = clf.score_features(feature_matrix(prompts, get_embedder().encode(prompts)))
    report = evaluate_router(scores, data.small_ok[sample], data.large_ok[sample])
    assert report.apgr > 0.58
