"""`llmgw router eval --report` and `llmgw cache eval --report` write the PNG (quality functions faked: no data,
no MiniLM), and the everyday breakdown says where the length rule beats the router."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from app.routing.datasets import LabelledPrompts


def _is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


class _FakeRouter:
    version = "fake-router"
    threshold = 0.5

    def score_many(self, prompts, emb, turns=None) -> np.ndarray:
        return np.array([0.9 if "hard" in p else 0.1 for p in prompts])


def _eval_set() -> LabelledPrompts:
    prompts = ["hard proof", "hard lock-free queue", "what is 2+2", "x" * 80 + " summarize in one sentence",
               "hi there", "y" * 90 + " write a long detailed essay"]
    large = np.array([True, True, False, False, False, True])
    return LabelledPrompts(prompts, large, ["math", "coding", "math", "editing", "chat", "writing"],
                           ["short_hard", "short_hard", "typical", "long_easy", "typical", "typical"], [1] * 6,
                           [f"g{i}" for i in range(6)])


def test_everyday_breakdown_and_length_wins(monkeypatch) -> None:
    from app.routing import quality

    monkeypatch.setattr(quality, "embed_texts_cached", lambda texts, tag: np.zeros((len(texts), 3)))
    ev = quality.everyday_quality(_FakeRouter(), eval_set=_eval_set(), rounds=50)
    assert ev.accuracy["router"][0] == 5 / 6  # only the long essay request is missed
    assert set(ev.by_category) == {"math", "coding", "editing", "chat", "writing"}
    assert ev.by_category["writing"]["n"][:2] == (1.0, 1.0)
    # the length rule is right on the long "write an essay" prompt where the router (no "hard") is wrong
    assert [(c, label) for c, _, label in ev.length_wins] == [("writing", True)]
    # the length rule (cutoff from the calibration set) misses both short hard prompts and the long easy one
    assert ev.router_wins == 3


def test_router_eval_report_writes_png(monkeypatch, tmp_path: Path) -> None:
    from app.cli import cli
    from app.routing import classifier, quality

    monkeypatch.setattr(quality, "embed_texts_cached", lambda texts, tag: np.zeros((len(texts), 3)))
    monkeypatch.setattr(classifier.RouterClassifier, "load", classmethod(lambda cls, path=None: _FakeRouter()))
    x = np.linspace(0, 1, 11)
    fake_rl = quality.RouteLLMQuality(n=10, apgr={"router": (0.6, 0.5, 0.7), "length rule": (0.55, 0.45, 0.65)},
                                      curves={"router": (x, np.sqrt(x)), "length rule": (x, x)},
                                      share_for_pgr50={"router": 0.3, "length rule": 0.5})
    monkeypatch.setattr(quality, "routellm_quality", lambda clf, rounds=300: fake_rl)
    real = quality.everyday_quality
    monkeypatch.setattr(quality, "everyday_quality",
                        lambda clf, rounds=1000: real(clf, eval_set=_eval_set(), rounds=50))
    out = tmp_path / "router.png"
    result = CliRunner().invoke(cli, ["router", "eval", "--report", str(out), "--rounds", "50"])
    assert result.exit_code == 0, result.output
    assert _is_png(out)
    flat = " ".join(result.output.split())
    assert "length rule right, router wrong [writing, needs large]" in flat  # not eaten as rich markup


def test_cache_eval_report_writes_png(monkeypatch, tmp_path: Path) -> None:
    from app.caching import loader, quality
    from app.caching.quality import ScoredPairs
    from app.cli import cli

    rng = np.random.default_rng(0)

    def scored(name: str, n: int) -> ScoredPairs:
        same = rng.random(n) < 0.5
        cosine = np.clip(0.75 + 0.1 * same + rng.normal(0, 0.08, n), 0, 1)
        proba = np.clip(0.5 + 0.3 * same + rng.normal(0, 0.15, n), 0, 1)
        return ScoredPairs(name, ["a"] * n, ["b"] * n, same, cosine, proba, np.zeros(n, dtype=bool))

    class _FakeVerifier:
        version, threshold = "fake-verifier", 0.855

    monkeypatch.setattr(loader, "load_verifier", lambda cfg: _FakeVerifier())
    choose = {"qqp_choose": scored("qqp choose", 200), "everyday_cal": scored("cal", 40),
              "lookalikes": scored("look", 20)}
    report = {"qqp_r1": scored("QQP 1", 100), "qqp_r2": scored("QQP 2", 100), "everyday_eval": scored("eval", 60),
              "ovos_r1": scored("OVOS 1", 80), "ovos_r2": scored("OVOS 2", 40)}
    monkeypatch.setattr(quality, "build_sets", lambda verifier: (choose, report))
    monkeypatch.setattr(quality, "choose_balanced", lambda choose, **kw: (0.7, 0.7, {"recall": 0.5}))
    out = tmp_path / "cache.png"
    result = CliRunner().invoke(cli, ["cache", "eval", "--report", str(out), "--rounds", "50"])
    assert result.exit_code == 0, result.output
    assert _is_png(out)
    import matplotlib.image as mpimg

    assert mpimg.imread(out).shape[1] == 1650  # three panels: QQP, everyday eval, the outside set
