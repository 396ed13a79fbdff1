"""Router v2: large_share calibration, threshold priority, the blend runtime, task signals, request-log
labels, and that our everyday eval set never overlaps anything the router is fitted or tuned on."""

import json
from pathlib import Path

import numpy as np
import pytest

from app.config import RouterConfig
from app.observability.request_log import RequestLogRecord
from app.route_decision import decide_route, route_threshold
from app.routing.calibration import best_accuracy_threshold, bootstrap_ci, share_at, threshold_for_share
from app.routing.classifier import RouterClassifier, RouterUnavailable
from app.routing.datasets import CALIBRATION_FILE, EVAL_FILE, MT_BENCH_FILE, load_everyday
from app.routing.features import FEATURE_NAMES
from app.routing.request_log_data import labelled, log_prompts
from app.routing.signals import SIGNAL_NAMES, task_signals
from app.routing.train import DATA_FILE, shared_data_dir


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 0.4, 0.5, 0.73, 1.0])
def test_large_share_gives_the_configured_share_on_calibration_scores(share: float) -> None:
    scores = np.random.default_rng(3).random(400)
    t = threshold_for_share(scores, share)
    assert int((scores >= t).sum()) == round(share * 400)
    assert share_at(scores, t) == pytest.approx(share, abs=1 / 400)


def test_large_share_with_ties_stays_under_and_rejects_bad_shares() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    t = threshold_for_share(scores, 0.4)  # 2 of 5 would split the tie: send only the one above it
    assert (scores >= t).sum() == 1
    with pytest.raises(ValueError):
        threshold_for_share(scores, 1.5)


def _tiny_artifact(calibration: list[float] | None) -> dict:
    rng = np.random.default_rng(0)
    d_base, d_blend = 384 + len(FEATURE_NAMES), 1 + len(SIGNAL_NAMES) + 384
    artifact = {
        "version": "tiny", "threshold": 0.5, "structural_features": FEATURE_NAMES, "signal_features": SIGNAL_NAMES,
        "mean": [0.0] * d_base, "scale": [1.0] * d_base,
        "layers": [{"weight": rng.normal(0, 0.05, (d_base, 1)).tolist(), "bias": [0.0]}],
        "blend": {"mean": [0.0] * d_blend, "scale": [1.0] * d_blend,
                  "layers": [{"weight": rng.normal(0, 0.3, (d_blend, 1)).tolist(), "bias": [0.0]}]},
    }
    if calibration is not None:
        artifact["calibration_scores"] = calibration
    return artifact


def _emb(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return v / np.linalg.norm(v)


def test_blend_runtime_scores_and_large_share_priority() -> None:
    calibration = sorted(np.random.default_rng(5).random(200).round(6).tolist())
    clf = RouterClassifier(_tiny_artifact(calibration))
    texts = ["What is the capital of Peru?", "Write a lock-free queue in C++ and prove it linearizable."]
    scores = clf.score_many(texts, np.stack([_emb(1), _emb(2)]), [1, 3])
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()
    assert clf.score(texts[1], _emb(2), turns=3) == pytest.approx(float(scores[1]), abs=1e-6)
    cfg = RouterConfig()
    assert route_threshold(clf, cfg) == 0.5  # nothing set: the artifact's threshold
    by_share = route_threshold(clf, RouterConfig(large_share=0.3))
    assert share_at(calibration, by_share) == pytest.approx(0.3, abs=0.005)
    assert route_threshold(clf, RouterConfig(large_share=0.3, threshold=0.9)) == 0.9  # threshold wins
    tenant = route_threshold(clf, RouterConfig(threshold=0.9), large_share=0.6)  # per-tenant share wins
    assert share_at(calibration, tenant) == pytest.approx(0.6, abs=0.005)
    everything = decide_route(clf, texts[0], _emb(1), cfg, large_share=1.0)
    nothing = decide_route(clf, texts[0], _emb(1), cfg, large_share=0.0)
    if clf.score(texts[0], _emb(1)) >= min(calibration):
        assert everything.pool == "large"
    assert nothing.pool == "small" and nothing.reason == "classifier"


def test_large_share_without_calibration_scores_falls_back_to_default_pool() -> None:
    clf = RouterClassifier(_tiny_artifact(None))
    with pytest.raises(RouterUnavailable):
        clf.threshold_for_share(0.3)
    decision = decide_route(clf, "hi", _emb(1), RouterConfig(large_share=0.3, default_pool="small"))
    assert decision.pool == "small" and decision.reason == "classifier-error"


def test_blend_with_other_signals_is_refused() -> None:
    artifact = _tiny_artifact([0.5])
    artifact["signal_features"] = ["other"]
    with pytest.raises(RouterUnavailable):
        RouterClassifier(artifact)


def test_task_signals_see_the_kind_of_work() -> None:
    names = {n: i for i, n in enumerate(SIGNAL_NAMES)}
    code = task_signals("Implement a thread-safe LRU cache in Go with unit tests.")
    lookup = task_signals("What is the capital of Peru?")
    edit = task_signals("Please summarize this in one sentence: the council met on Tuesday and voted.")
    assert code[names["code_lang"]] > 0 and code[names["code_task"]] > 0 and lookup[names["code_task"]] == 0
    assert lookup[names["lookup_start"]] == 1 and code[names["lookup_start"]] == 0
    assert edit[names["edit"]] > 0 and edit[names["asks_short"]] > 0
    assert task_signals("Now make it shorter.", turns=3)[names["log_turns"]] == pytest.approx(np.log(3))


def test_best_accuracy_threshold_and_bootstrap_interval() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    labels = np.array([False, False, False, True, True, True])
    t = best_accuracy_threshold(scores, labels)
    assert 0.3 < t <= 0.6
    point, lo, hi = bootstrap_ci(lambda idx: float(np.mean(labels[idx])), len(labels), rounds=300)
    assert point == 0.5 and 0.0 <= lo < point < hi <= 1.0


def test_request_log_labels_and_calibration_prompts() -> None:
    def rec(text, route="small", model="auto", evaluation=None, turns=1, status=200) -> RequestLogRecord:
        msgs = [{"role": "user", "content": f"turn {i}"} for i in range(turns - 1)]
        msgs.append({"role": "user", "content": text})
        return RequestLogRecord("r", "t", model=model, route=route, messages=msgs, evaluation=evaluation or {},
                                status=status)

    records = [
        rec("a", evaluation={"router_label": "large"}, route="large"),
        rec("b", evaluation={"judge": {"score": 0.2}}),  # small pool, judged poor -> large needed
        rec("c", evaluation={"judge": {"score": 0.9}}),  # small pool, judged good -> small suffices
        rec("d", route="large", evaluation={"judge": {"score": 0.1}}),  # says nothing about the small model
        rec("e", model="large"),  # explicit model, unlabelled: not a routed prompt
        rec("f", status=503),
        rec("g", turns=3),
        rec("g", turns=3),  # duplicate
    ]
    prompts = log_prompts(records)
    assert [(p.text, p.label) for p in prompts] == [("a", True), ("b", True), ("c", False), ("d", None),
                                                    ("g", None)]
    assert prompts[-1].turns == 3
    rows = labelled(prompts)
    assert rows.prompts == ["a", "b", "c"] and rows.large.tolist() == [True, True, False]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def test_everyday_eval_set_is_labelled_and_disjoint_from_everything_fitted_or_tuned() -> None:
    ev, cal = load_everyday(EVAL_FILE), load_everyday(CALIBRATION_FILE)
    assert len(ev) >= 300 and 0.25 < ev.large.mean() < 0.6
    assert {"coding", "writing", "reasoning", "lookup"} <= set(ev.category)
    assert {"short_hard", "long_easy"} <= set(ev.case)
    eval_texts = {_norm(p) for p in ev.prompts}
    assert len(eval_texts) == len(ev)
    assert not eval_texts & {_norm(p) for p in cal.prompts}
    data = shared_data_dir()
    if not (data / "routing").exists():
        pytest.skip("../shared/data not present: checked against the calibration set only")
    routellm = {_norm(json.loads(line)["prompt"]) for line in (data / DATA_FILE).read_text().splitlines() if line}
    mt = {_norm(t) for line in (data / MT_BENCH_FILE).read_text().splitlines() if line
          for t in json.loads(line)["user_turns"]}
    assert not eval_texts & routellm and not eval_texts & mt
    # nor a near copy: no eval prompt shares its first 60 characters with a training prompt
    heads = {t[:60] for t in routellm | mt | {_norm(p) for p in cal.prompts} if len(t) >= 60}
    assert not {t[:60] for t in eval_texts if len(t) >= 60} & heads


def test_bundled_artifact_is_a_calibrated_blend() -> None:
    path = Path(__file__).resolve().parents[2] / "app" / "routing" / "artifacts" / "router-v2.json"
    clf = RouterClassifier.load(path)
    assert clf.blend is not None and len(clf.calibration_scores) >= 100
    share = share_at(clf.calibration_scores, clf.threshold)
    assert 0.2 < share < 0.7
    assert clf.metadata["blend"]["rows"]["cal"] == len(load_everyday(CALIBRATION_FILE))
