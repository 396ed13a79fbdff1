"""The verifier's short-command training pairs (app/caching/train_pairs.py): template expansion, exclusions."""

from __future__ import annotations

import importlib.metadata as metadata
import random

import numpy as np
import pytest

from app.caching import intent_pairs, train_pairs
from app.caching.train_pairs import HA_PACKAGE, TRAIN_SKILLS, ha_intents, parse_template, sample


def _all(template: str, rules: dict | None = None, values: dict | None = None, n: int = 400) -> set[str]:
    node, rng = parse_template(template), random.Random(0)
    rules = {k: parse_template(v) for k, v in (rules or {}).items()}
    out = {sample(node, rules, {}, values or {}, rng) for _ in range(n)}
    return {" ".join(t.split()) for t in out if t is not None}


def test_template_alternatives_optionals_rules_and_permutations() -> None:
    assert _all("(turn|switch) on [the] light[s]") == {
        f"{v} on {the}light{s}" for v in ("turn", "switch") for the in ("the ", "") for s in ("s", "")}
    assert _all("<what_is> it", rules={"what_is": "(what's|what is)"}) == {"what's it", "what is it"}
    assert _all("(pause;[<the>] music)", rules={"the": "the"}) == {
        "pause the music", "pause music", "the music pause", "music pause"}


def test_slots_take_the_instance_value_and_unfilled_slots_drop_the_template() -> None:
    kitchen = parse_template("kitchen")
    assert _all("turn on the {area} lights", values={"area": kitchen}) == {"turn on the kitchen lights"}
    assert _all("set the {brightness} brightness", values={}) == set()  # a number range: never filled


def test_ha_intents_skip_eval_domains_and_ranges() -> None:
    data = {
        "expansion_rules": {"the": "(the|my)"},
        "lists": {"brightness": {"range": {"from": 0, "to": 100}}, "area": {"wildcard": True}},
        "intents": {
            "HassTurnOn": {"data": [{"sentences": ["turn on <the> {area} lights", "switch on <the> {area} lights"]}]},
            "HassLightSet": {"data": [{"sentences": ["set {area} to {brightness} percent"]}]},
            "HassGetCurrentTime": {"data": [{"sentences": ["what time is it", "tell me the time"]}]},
        },
    }
    groups = ha_intents(data)
    assert groups and all(k.startswith("HassTurnOn#") for k in groups)
    for body in groups.values():
        lines = body.splitlines()
        areas = {a for a in train_pairs.HA_VALUES["area"] if all(a in line for line in lines)}
        assert len(areas) == 1  # one area per instance, on both sides of every positive


def test_training_sources_are_disjoint_from_the_eval_skills() -> None:
    assert not set(TRAIN_SKILLS) & set(intent_pairs.SKILLS)
    stems = {s.split("-skill-")[1] for s in intent_pairs.SKILLS} | {"ip-address", "about", "alerts"}
    assert not {s.split("-skill-")[1] for s in TRAIN_SKILLS} & stems  # no fork of an eval skill either


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not (_installed(HA_PACKAGE) and _installed("ovos-skill-parrot") and _installed("ovos-skill-news")),
                    reason="make train-data not run")
def test_training_intents_hold_no_eval_text() -> None:
    from app.caching.train_pairs import _norm, eval_texts, training_intents

    held = {_norm(t) for t in eval_texts()}
    intents = training_intents()
    texts = [t for lines in intents.values() for t in lines]
    assert len(texts) > 1000
    assert not {_norm(t) for t in texts} & held
    assert len({t.lower() for t in texts}) == len(texts)  # a text belongs to one intent only
    assert not any(any(c.isdigit() for c in t) for t in texts)


def test_build_pairs_caps_are_parameters() -> None:
    lines = [f"ask thing {chr(97 + i)}" for i in range(8)]
    vectors = {t: np.array([1.0, i / 10, 0]) / np.linalg.norm([1.0, i / 10, 0]) for i, t in enumerate(lines)}
    pairs = intent_pairs.build_pairs({("s", "i"): lines}, vectors, positives=5)
    assert len(pairs) == 5


def test_cache_eval_scores_the_artifact_it_is_given(monkeypatch, tmp_path) -> None:
    """`llmgw cache eval --artifact PATH` (a `train-verifier --out` build) scores that artifact, not the configured."""
    from typer.testing import CliRunner

    from app.caching import quality
    from app.caching.verifier import DEFAULT_ARTIFACT, PairVerifier
    from app.cli import cli

    seen = []

    def fake_sets(verifier):
        seen.append(verifier)
        raise RuntimeError("stop after loading")

    monkeypatch.setattr(quality, "build_sets", fake_sets)
    import json

    with np.load(DEFAULT_ARTIFACT, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = "candidate-under-test"
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(tmp_path / "candidate.npz", **arrays)
    result = CliRunner().invoke(cli, ["cache", "eval", "--artifact", str(tmp_path / "candidate.npz")])
    assert isinstance(result.exception, RuntimeError) and len(seen) == 1
    assert isinstance(seen[0], PairVerifier) and seen[0].version == "candidate-under-test"


def test_an_instance_repeating_the_values_a_block_uses_is_left_out() -> None:
    """Two instances of a block are different questions only if a slot value the block uses differs; otherwise
    their lines are paraphrases and the nearest-other-intent rule would label them look-alike negatives."""
    data = {
        "lists": {"area": {"wildcard": True}},
        "intents": {
            "HassClimateGetTemperature": {"data": [{"sentences": ["how (warm|hot) is it [in] here",
                                                                  "what is the [current] temp[erature]"]}]},
            "HassTurnOn": {"data": [{"sentences": ["turn on [the] {area} lights", "switch on [the] {area} lights"]}]},
        },
    }
    for seed in range(20):
        groups = ha_intents(data, seed)
        assert [k for k in groups if k.startswith("HassClimate")] == ["HassClimateGetTemperature#0#0"]
        turn_on = [k for k in groups if k.startswith("HassTurnOn")]
        areas = [{a for a in train_pairs.HA_VALUES["area"] if a in groups[k]} for k in turn_on]
        assert len({frozenset(a) for a in areas}) == len(turn_on)  # each kept instance has its own area


def test_slots_in_follows_rules() -> None:
    rules = {"where": parse_template("in [the] {area}"), "loop": parse_template("<loop> x")}
    assert train_pairs.slots_in(parse_template("turn on {name} <where> <loop>"), rules) == {"name", "area"}


def test_family_cap_balances_labels_per_intent_family() -> None:
    pairs = [intent_pairs.Pair(f"a{i}", f"b{i}", i % 2 == 0, HA_PACKAGE, f"HassGetState#{i % 7}#0") for i in range(100)]
    pairs += [intent_pairs.Pair(f"c{i}", f"d{i}", i % 2 == 0, "ovos-skill-stop", "stop") for i in range(6)]
    kept = train_pairs.cap_families(pairs, 20)
    ha = [p for p in kept if p.skill == HA_PACKAGE]
    assert sum(p.same for p in ha) == 10 and sum(not p.same for p in ha) == 10  # 7 blocks folded into one family
    assert len([p for p in kept if p.skill != HA_PACKAGE]) == 6  # a family under the cap keeps every pair
    assert train_pairs.cap_families(pairs, 20) == kept  # seeded
