"""`model: auto` goes through the classifier; a broken router falls back to the default pool."""

from __future__ import annotations

import pytest
from ray import serve

from app.config import RouterConfig
from deployments.router import Router

pytestmark = pytest.mark.gateway
EASY = "What is the capital of France?"
HARD = ("A train leaves at 3:15 pm travelling 84 km/h; a second leaves the same station at 4:05 pm at 102 km/h. "
        "At what time does the second catch the first, and how far from the station? Show each step.")


def test_auto_is_routed_by_the_classifier_with_decision_headers(client) -> None:
    from app.embedding import Embedder
    from app.routing.classifier import RouterClassifier
    from tests.conftest import graph_embed_backend

    clf, embedder = RouterClassifier.load(), Embedder(backend=graph_embed_backend())  # the vectors the graph routes on
    for text in (EASY, HARD, "Which of the following is a prime number?\nA. 21\nB. 27\nC. 29\nD. 33\nAnswer:"):
        resp = client.post("/v1/chat/completions", json={"model": "auto", "max_tokens": 4, "cache": False,
                                                          "messages": [{"role": "user", "content": text}]})
        assert resp.status_code == 200
        route, score = resp.headers["x-llmgw-route"], float(resp.headers["x-llmgw-route-score"])
        assert route in ("small", "large") and 0.0 <= score <= 1.0
        assert resp.headers["x-llmgw-model"] == resp.json()["model"] == f"tiny-{route}"
        expected = clf.score(text, embedder.encode_one(text))
        assert score == pytest.approx(expected, abs=2e-3)
        assert route == ("large" if expected >= clf.threshold else "small")


def test_explicit_model_bypasses_the_classifier(client) -> None:
    resp = client.post("/v1/chat/completions", json={"model": "large", "max_tokens": 4, "cache": False,
                                                      "messages": [{"role": "user", "content": EASY}]})
    assert resp.headers["x-llmgw-route"] == "large" and "x-llmgw-route-score" not in resp.headers


def test_missing_artifact_falls_back_to_default_pool_and_counts(gateway_url: str) -> None:
    cfg = RouterConfig(artifact="/nonexistent/router.json", default_pool="small").model_dump()
    handle = serve.run(Router.bind(cfg), name="router-broken", route_prefix=None)
    try:
        decision = handle.analyze.remote(HARD).result()
        assert decision.pool == "small" and decision.reason == "no-classifier" and decision.score is None
        assert decision.embedding is not None and decision.embedding.shape == (384,)
        stats = handle.stats.remote().result()
        assert stats["fallbacks"] == 1 and stats["classifier"] is None
    finally:
        serve.delete("router-broken")
