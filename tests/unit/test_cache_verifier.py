"""The shipped semantic-hit verifier: its numpy tree runtime, token features, and look-alike behaviour."""

import numpy as np
import pytest

from app.caching.lookalikes import NEGATIVES, POSITIVES
from app.caching.token_features import TOKEN_FEATURES, Idf, encode_tokens, token_features
from app.caching.trees import TreeEnsemble, export_hgb
from app.caching.verifier import PairVerifier, VerifierUnavailable
from app.embedding import get_embedder


def test_numpy_trees_match_scikit_learn_including_missing_values() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 8))
    x[rng.random(x.shape) < 0.02] = np.nan
    y = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) ** 2 > 1
    model = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(x, y)
    ours = TreeEnsemble(export_hgb(model)).predict(x[:400])
    np.testing.assert_allclose(ours, model.predict_proba(x[:400])[:, 1], atol=1e-9)


def test_token_alignment_separates_paraphrase_from_lookalike() -> None:
    same, para, other = encode_tokens(["How do I reset my password?", "How can I reset my password?",
                                       "How do I change my username?"])
    idf = Idf(np.ones(40000))
    f_same = dict(zip(TOKEN_FEATURES, token_features(same, same, idf), strict=True))
    assert f_same["align_f1"] == pytest.approx(1.0, abs=1e-3)
    assert f_same["unaligned_idf_sum"] == pytest.approx(0, abs=1e-3)
    f_para = dict(zip(TOKEN_FEATURES, token_features(para, same, idf), strict=True))
    f_other = dict(zip(TOKEN_FEATURES, token_features(other, same, idf), strict=True))
    assert f_para["align_f1"] > f_other["align_f1"]
    assert f_para["unaligned_idf_sum"] < f_other["unaligned_idf_sum"]


@pytest.fixture(scope="module")
def verifier() -> PairVerifier:
    return PairVerifier.load()


def _served(verifier: PairVerifier, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    emb = get_embedder()
    ea, eb = emb.encode([a for a, _ in pairs]), emb.encode([b for _, b in pairs])
    return [(a, b) for (a, b), x, y in zip(pairs, ea, eb, strict=True)
            if float(x @ y) >= verifier.similarity_gate and verifier.accept(b, a, y, x)]


def test_shipped_verifier_serves_no_lookalike_negative(verifier: PairVerifier) -> None:
    assert _served(verifier, NEGATIVES) == []


def test_shipped_verifier_serves_paraphrases_and_its_metadata_is_honest(verifier: PairVerifier) -> None:
    assert len(_served(verifier, POSITIVES)) >= 3
    test = verifier.metadata["test"]
    assert test["precision"] >= 0.88 and test["duplicate_hit_rate"] >= 0.25, test
    assert verifier.threshold > verifier.metadata["max_lookalike_negative_proba"]


def test_malformed_or_foreign_artifact_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, meta=np.asarray('{"version": "x"}'))
    with pytest.raises(VerifierUnavailable):
        PairVerifier.load(bad)
    with pytest.raises(VerifierUnavailable):
        PairVerifier.load(tmp_path / "missing.npz")


def test_accept_many_agrees_with_one_by_one(verifier: PairVerifier) -> None:
    query = "How can I reset my password?"
    cached = ["How do I reset my password?", "How do I reset my router?", "How do I change my username?",
              "How do I reset my password 2 times?"]
    emb = get_embedder()
    eq, ec = emb.encode_one(query), emb.encode(cached)
    one_by_one = [verifier.accept(query, c, eq, e) for c, e in zip(cached, ec, strict=True)]
    assert verifier.accept_many(query, cached, eq, list(ec)) == one_by_one
    assert one_by_one[0] and not any(one_by_one[1:])


def test_numpy_alignment_network_matches_torch() -> None:
    import torch

    from app.caching.alignment_net import AlignmentNet, piece_inputs
    from app.caching.train_alignment import _padded, export, fit_network

    texts = ["How do I reset my password?", "How can I reset my password?", "How do I change my username?",
             "What is the capital of France?", "Which city is the capital of France?", "Is Paris in Germany?"]
    views = encode_tokens(texts)
    idf = Idf(np.linspace(1.0, 5.0, 40000))
    pairs = [(0, 1, 1), (0, 2, 0), (3, 4, 1), (3, 5, 0), (1, 2, 0), (4, 5, 0)]
    vq, vc = [views[i] for i, _, _ in pairs], [views[j] for _, j, _ in pairs]
    cos = np.array([float(views[i].vecs.mean(0) @ views[j].vecs.mean(0)) for i, j, _ in pairs], dtype=np.float32)
    net = fit_network(vq, vc, cos, np.array([s for _, _, s in pairs]), idf, seed=0, epochs=3, batch=4)
    ours = AlignmentNet({f"n_{k}": v for k, v in export(net).items()}, "n_")
    for q, c, s in zip(vq, vc, cos, strict=True):
        xa, xb = piece_inputs(q, c, idf), piece_inputs(c, q, idf)
        with torch.no_grad():
            ref = torch.sigmoid(net(*_padded([xa]), *_padded([xb]), torch.tensor([s]))).item()
        assert ours.predict_one(xa, xb, float(s)) == pytest.approx(ref, abs=1e-5)
