"""Cache data from the request log (app/caching/log_pairs.py) and the choose rule that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.caching.log_pairs import candidate_pairs, labelled_pairs, log_questions, write_pairs
from app.caching.quality import ScoredPairs, choose_balanced
from app.observability.request_log import RequestLogRecord


def _rec(tenant: str, text: str, status: int = 200, prompt: bool = False) -> RequestLogRecord:
    if prompt:
        return RequestLogRecord(request_id=text, tenant=tenant, status=status, prompt=text)
    messages = [{"role": "user", "content": "earlier turn"}, {"role": "assistant", "content": "x"},
                {"role": "user", "content": text}]
    return RequestLogRecord(request_id=text, tenant=tenant, status=status, messages=messages)


def test_log_questions_last_user_turn_successful_deduped() -> None:
    records = [_rec("t1", "How do I reset my password?"), _rec("t1", "how do I  reset my password?"),
               _rec("t1", "failed one", status=500), _rec("t2", "How do I reset my password?"),
               _rec("t1", "Completion prompt", prompt=True)]
    assert log_questions(records) == [("t1", "How do I reset my password?"), ("t2", "How do I reset my password?"),
                                      ("t1", "Completion prompt")]


def test_candidates_pair_with_nearest_earlier_question_of_the_same_tenant() -> None:
    questions = [("t1", "q0"), ("t2", "q1"), ("t1", "q2"), ("t1", "q3")]
    v = np.array([[1, 0], [1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    rows = candidate_pairs(questions, v, gate=0.7)
    # q1 is t2's first question (q0 is another tenant's); q2 pairs with q0 (0.8); q3's best earlier is q2 (0.6 < 0.7)
    assert rows == [{"a": "q0", "b": "q2", "tenant": "t1", "cosine": 0.8, "same": None}]
    assert [r["b"] for r in candidate_pairs(questions, v, gate=0.5)] == ["q2", "q3"]


def test_labelled_pairs_round_trip_skips_unlabelled_and_rejects_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    write_pairs([{"a": "x", "b": "y", "same": None}, {"a": "x", "b": "z", "same": True},
                 {"a": "y", "b": "z", "same": False}], path)
    assert labelled_pairs(path) == [("x", "z", True), ("y", "z", False)]
    path.write_text(json.dumps({"a": "x", "b": "y", "same": "yes"}) + "\n")
    with pytest.raises(ValueError, match=r"pairs\.jsonl:1"):
        labelled_pairs(path)


def _scored(name: str, same: list[bool], cosine: list[float], proba: list[float]) -> ScoredPairs:
    n = len(same)
    return ScoredPairs(name, ["a"] * n, ["b"] * n, np.array(same), np.array(cosine), np.array(proba),
                       np.zeros(n, dtype=bool))


def test_choose_balanced_uses_the_extra_sets() -> None:
    qqp = _scored("qqp", [True] * 9 + [False], [0.9] * 10, [0.95] * 9 + [0.1])
    cal = _scored("cal", [True, True, False], [0.9, 0.9, 0.9], [0.8, 0.55, 0.2])
    choose = {"qqp_choose": qqp, "everyday_cal": cal, "lookalikes": _scored("look", [False], [0.9], [0.3])}
    _, t, info = choose_balanced(choose)
    # the lowest threshold on the grid (0.40) is already 0.05 above the worst negative (0.3) and serves both
    assert t == pytest.approx(0.40) and info["recall"] == 1.0
    # your pairs: a negative at P 0.6 forces the threshold up to 0.65, a positive counts in the mean recall
    choose["your_pairs"] = _scored("yours", [False, True], [0.9, 0.9], [0.6, 0.9])
    _, t2, info2 = choose_balanced(choose, recall_sets=("everyday_cal", "your_pairs"),
                                   negative_sets=("everyday_cal", "lookalikes", "your_pairs"))
    assert t2 == pytest.approx(0.65)
    assert info2["everyday_cal_recall"] == 0.5 and info2["your_pairs_recall"] == 1.0 and info2["recall"] == 0.75


def test_export_pairs_cli_writes_labelable_rows(monkeypatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import cli
    from app.routing import datasets

    log = tmp_path / "requests.jsonl"
    texts = ["How do I reset my password?", "How can I reset my password?", "What is the capital of France?"]
    log.write_text("".join(json.dumps(_rec("acme", t).to_dict()) + "\n" for t in texts)
                   + json.dumps(_rec("other", texts[1]).to_dict()) + "\n")
    vecs = {texts[0]: [1.0, 0.0], texts[1]: [0.96, 0.28], texts[2]: [0.0, 1.0]}
    monkeypatch.setattr(datasets, "embed_texts_cached", lambda t, tag: np.array([vecs[x] for x in t]))
    out = tmp_path / "pairs.jsonl"
    result = CliRunner().invoke(cli, ["cache", "export-pairs", "--from-request-log", str(log), "--out", str(out),
                                      "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"a": texts[0], "b": texts[1], "tenant": "acme", "cosine": 0.96, "same": None}]
    assert labelled_pairs(out) == []  # nothing labelled yet
