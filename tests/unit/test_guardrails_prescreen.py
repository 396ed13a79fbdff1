"""The injection pre-screen: it skips the MiniLM pass only for texts it clears, never changes another decision."""

from __future__ import annotations

import numpy as np
import pytest

from app.guardrails.detector import InjectionDetector
from app.guardrails.injection import InjectionClassifier
from app.guardrails.injection_features import FEATURE_SPEC
from app.guardrails.input import InputGuard
from app.guardrails.prescreen import DEFAULT_PRESCREEN, Prescreen
from app.guardrails.training.train_prescreen import clearing_threshold
from app.mlp import ArtifactUnavailable
from tests.unit.test_guardrails_input import BENIGN, INJECTIONS, cfg, user


class CountingEmbed:
    """The real MiniLM, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        from app.embedding import get_embedder

        self.encode = get_embedder().encode
        self.texts: list[str] = []

    def __call__(self, texts) -> np.ndarray:
        self.texts.extend(texts)
        return self.encode(list(texts))


@pytest.fixture(scope="module")
def parts():
    return InjectionClassifier.load(), Prescreen.load()


def detector(parts, embed=None) -> InjectionDetector:
    clf, screen = parts
    return InjectionDetector(clf, embed or CountingEmbed(), prescreen=screen)


def test_the_shipped_artifact_fits_the_shipped_classifier(parts) -> None:
    clf, screen = parts
    assert screen.classifier == clf.version and screen.probability_at_threshold < clf.threshold
    other = InjectionClassifier(  # same weights, another version: its pre-screen is not used
        {"embedding_weight": clf.w_emb, "ngram_weight": clf.w_ngram, "pattern_weight": clf.w_pat,
         "bias": np.asarray([clf.bias])},
        {"version": "injection-v9", "threshold": clf.threshold, "features": FEATURE_SPEC})
    assert InjectionDetector(other, CountingEmbed(), prescreen=screen).prescreen is None


def test_clearing_threshold_keeps_within_its_budget() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=2000)
    detected = rng.random(2000) < 0.5
    for budget in (0.0, 0.0025, 0.01, 0.1):
        tau = clearing_threshold(logits, detected, budget)
        lost = int((logits[detected] < tau).sum())
        assert lost <= budget * detected.sum() and lost == int(budget * detected.sum())  # no ties here


def test_cleared_texts_skip_the_embedding_and_the_rest_score_exactly(parts) -> None:
    embed = CountingEmbed()
    screened, exact = detector(parts, embed), InjectionDetector(parts[0], CountingEmbed())
    for text in INJECTIONS + BENIGN:
        before = len(embed.texts)
        score = screened.score(text)
        if len(embed.texts) == before:  # cleared: its score is the pre-screen's, below the threshold
            assert score < screened.threshold
        else:
            assert score == pytest.approx(exact.score(text), abs=1e-6)
    assert screened.counts["cleared"] >= 3, screened.counts  # plain questions need no MiniLM pass
    assert screened.counts["cleared"] + screened.counts["embedded"] == len(INJECTIONS + BENIGN)
    assert all(screened.score(t) >= screened.threshold for t in INJECTIONS[:2])  # classic ones still flagged


def test_off_or_a_lower_tenant_threshold_always_embeds(parts) -> None:
    embed = CountingEmbed()
    det = detector(parts, embed)
    benign = "What is the capital of Australia?"
    assert det.classifier.score_prompt(benign, embed, det.prescreen)[1], "this plain question is cleared"
    for injection in ({"prescreen": False}, {"threshold": det.threshold / 2}):
        guard = InputGuard(cfg(injection={"action": "block", "patterns": False, **injection}), det)
        before = len(embed.texts)
        assert guard.check(user(benign), prompt_tokens=10) == []
        assert len(embed.texts) > before, injection


def test_a_missing_or_foreign_artifact_falls_back_to_the_exact_path(tmp_path, parts) -> None:
    with pytest.raises(ArtifactUnavailable):
        Prescreen.load(tmp_path / "none.npz")
    with np.load(DEFAULT_PRESCREEN, allow_pickle=False) as data:
        arrays = {k: data[k] for k in ("ngram_weight", "pattern_weight", "bias")}
    with pytest.raises(ArtifactUnavailable, match="other features"):
        Prescreen(arrays, {"version": "x", "threshold": -3.0, "features": {"ngram_dim": 1}})
    det = InjectionDetector.load(prescreen_artifact=str(tmp_path / "none.npz"))
    assert det.prescreen is None and det.score(BENIGN[0]) < det.threshold and det.counts["embedded"] == 1
