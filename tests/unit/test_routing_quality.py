"""The bundled router (v2 blend) beats random routing on held-out real data (skipped without ../shared/data)."""

import pytest

from app.routing.train import shared_data_dir


@pytest.mark.skipif(not (shared_data_dir() / "routing").exists(), reason="../shared/data not present")
def test_router_beats_random_on_held_out_prompts() -> None:
    from app.routing.classifier import RouterClassifier
    from app.routing.datasets import routellm_test_parts, routellm_vectors
    from app.routing.evaluate import evaluate_router
    from app.routing.train import load_dataset

    clf = RouterClassifier.load()
    data = load_dataset()
    report, _ = routellm_test_parts(data.groups, clf.metadata["split"]["seed"])  # never fitted on
    prompts = [data.prompts[i] for i in report]
    scores = clf.score_many(prompts, routellm_vectors(data.prompts, data.sha256, report))  # cached in .cache/emb
    result = evaluate_router(scores, data.small_ok[report], data.large_ok[report])
    assert result.apgr > 0.55  # random routing: 0.50
