"""The shipped semantic-hit verifier: its numpy tree runtime, token features, and look-alike behaviour."""

import hashlib
import json

import numpy as np
import pytest

from app.caching.lookalikes import NEGATIVES, POSITIVES
from app.caching.pair_features import hard_veto
from app.caching.token_features import TOKEN_FEATURES, Idf, encode_tokens, token_features
from app.caching.train_verifier import QQP_FILE, precision_hit_rate, split
from app.caching.trees import TreeEnsemble, export_hgb
from app.caching.verifier import PairVerifier, VerifierUnavailable
from app.embedding import get_embedder
from app.routing.train import shared_data_dir


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


# Look-alikes written for this test only, after the verifier and its threshold were fixed: never use
# them to train or to choose a threshold (app/caching/lookalikes.py's NEGATIVES were used for that).
HELD_OUT_NEGATIVES: list[tuple[str, str]] = [
    ("How do I export my contacts to a CSV file?", "How do I import my contacts from a CSV file?"),
    ("What is the boiling point of water in Celsius?", "What is the freezing point of water in Celsius?"),
    ("How do I enable two-factor authentication?", "How do I disable two-factor authentication?"),
    ("Which planet is closest to the sun?", "Which planet is farthest from the sun?"),
    ("How much does a first-class stamp cost in the UK?", "How much does a second-class stamp cost in the UK?"),
    ("Can I bring a laptop in my carry-on bag?", "Can I bring a power bank in my checked bag?"),
    ("What are the side effects of vitamin D?", "What are the side effects of vitamin B12?"),
    ("How do I merge two branches in git?", "How do I delete two branches in git?"),
    ("What year did the Berlin Wall fall?", "What year was the Berlin Wall built?"),
    ("How do I add a printer on Windows 11?", "How do I remove a printer on Windows 11?"),
    ("Is coffee bad for your kidneys?", "Is coffee bad for your liver?"),
    ("How many ounces are in a pound?", "How many ounces are in a cup?"),
    ("What is the minimum wage in California?", "What is the minimum wage in Texas?"),
    ("How do I speed up my laptop's fan?", "How do I slow down my laptop's fan?"),
    ("Who wrote Pride and Prejudice?", "Who wrote Sense and Sensibility?"),
    ("How do I get a refund for a late train?", "How do I get a refund for a cancelled concert?"),
    ("What is the square root of 144?", "What is the square root of 169?"),
    ("How do I unblock someone on Instagram?", "How do I block someone on Instagram?"),
    ("Does the museum charge for children under five?", "Does the museum charge for adults over sixty-five?"),
    ("How long does it take to fly from London to New York?", "How long does it take to fly from London to Tokyo?"),
    ("What should I eat before a marathon?", "What should I eat after a marathon?"),
    ("How do I raise the volume on my TV remote?", "How do I mute the volume on my TV remote?"),
    ("Is it legal to drive with headphones in Spain?", "Is it legal to drive with headphones in France?"),
    ("How do I pause my gym membership?", "How do I end my gym membership?"),
    ("What is the difference between a virus and bacteria?", "What is the difference between a virus and a worm?"),
    ("How do I sort a list in ascending order in Python?", "How do I sort a list in descending order in Python?"),
    ("Where can I watch the first season of the show?", "Where can I watch the last season of the show?"),
    ("How do I convert Fahrenheit to Celsius?", "How do I convert Celsius to Kelvin?"),
    ("What documents do I need to renew my passport?", "What documents do I need to renew my driving licence?"),
    ("Why do cats purr when they are happy?", "Why do cats hiss when they are scared?"),
]


def test_shipped_verifier_serves_no_held_out_lookalike_negative(verifier: PairVerifier) -> None:
    assert not set(HELD_OUT_NEGATIVES) & set(NEGATIVES)
    assert _served(verifier, HELD_OUT_NEGATIVES) == []


def test_shipped_verifier_serves_paraphrases(verifier: PairVerifier) -> None:
    assert len(_served(verifier, POSITIVES)) >= 3


@pytest.mark.skipif(not (shared_data_dir() / QQP_FILE).exists(), reason="../shared/data not present")
def test_shipped_verifier_precision_on_held_out_qqp(verifier: PairVerifier) -> None:
    """Precision and duplicate hit rate computed here, on 200 QQP pairs of the split held out of training
    (docs/cache.md's target: precision >= 0.90 at a hit rate >= 0.35; the bounds below leave ~1.5 standard
    errors for a sample this size), next to the cosine gate alone on the same pairs. ~1 min on 2 cores."""
    raw = (shared_data_dir() / QQP_FILE).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == verifier.metadata["data_sha256"], "QQP file changed: retrain"
    rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    _, _, test = split(len(rows), verifier.metadata["split"]["seed"])
    sample = np.random.default_rng(0).choice(test, 200, replace=False)
    a, b = [rows[i]["a"] for i in sample], [rows[i]["b"] for i in sample]
    same = np.array([bool(rows[i]["same"]) for i in sample])
    emb = get_embedder()
    ea, eb = emb.encode(a), emb.encode(b)
    cosine = np.sum(ea * eb, axis=1)
    gate = cosine >= verifier.similarity_gate
    open_ = np.array([hard_veto(y, x) is None for x, y in zip(a, b, strict=True)])
    proba = verifier.proba_pairs(b, a, eb, ea)  # query = b, cached = a, as the cache asks
    precision, hit_rate, hits = precision_hit_rate(gate & open_ & (proba >= verifier.threshold), same)
    gate_precision, _, _ = precision_hit_rate(gate, same)
    assert hits >= 15 and precision >= 0.82 and hit_rate >= 0.25, (precision, hit_rate, hits)
    assert precision >= gate_precision + 0.10, (precision, gate_precision)


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
