"""The outside paraphrase set built from voice-assistant intent files (app/caching/intent_pairs.py)."""

from __future__ import annotations

import numpy as np
import pytest

from app.caching import intent_pairs
from app.caching.intent_pairs import Pair, build_pairs, expand, group_of, installed_intent_files, parse_intents


def test_expand_alternatives_and_empty_choice() -> None:
    assert expand("what (network|wifi) are you (on|)") == [
        "what network are you on", "what network are you", "what wifi are you on", "what wifi are you"]
    assert expand("  mute   volume ") == ["mute volume"]


def test_parse_drops_slots_times_digits_comments_and_ambiguous_lines() -> None:
    files = {"skill-a": {
        "who": "who made you\n# a comment\nwho built you\nwho made {thing}\n\nwho made you today\nwho made 2 of you\n",
        "where": "where were you made\nwho built you",  # "who built you" is in two intents: dropped from both
        "empty": "{only} {slots}",
    }}
    intents = parse_intents(files)
    assert intents == {("skill-a", "who"): ["who made you"], ("skill-a", "where"): ["where were you made"]}


def test_parse_dedupes_case_insensitively() -> None:
    intents = parse_intents({"s": {"i": "Mute audio\nmute audio\nmute"}})
    assert intents[("s", "i")] == ["Mute audio", "mute"]


def _vec(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_build_pairs_positives_inside_intent_negatives_nearest_other_intent() -> None:
    intents = {("s", "mute"): ["mute", "mute audio"], ("s", "unmute"): ["unmute", "unmute audio"],
               ("t", "only"): ["a", "b"]}
    vectors = {"mute": _vec(1, 0, 0), "mute audio": _vec(1, 0.2, 0), "unmute": _vec(1, -0.1, 0.1),
               "unmute audio": _vec(0, 1, 0), "a": _vec(0, 0, 1), "b": _vec(0, 0.1, 1)}
    pairs = build_pairs(intents, vectors)
    positives = {(p.cached, p.query) for p in pairs if p.same}
    assert positives == {("mute", "mute audio"), ("unmute", "unmute audio"), ("a", "b")}
    negatives = [p for p in pairs if not p.same]
    assert all(p.skill == "s" for p in negatives)  # a one-intent skill gives no negative
    # each line's nearest line of the other intent: "mute" -> "unmute", "unmute" -> "mute"
    assert Pair("unmute", "mute", False, "s", "mute") in negatives
    assert Pair("mute", "unmute", False, "s", "unmute") in negatives
    for p in negatives:
        assert {k[1] for k, v in intents.items() if p.cached in v} != {k[1] for k, v in intents.items() if p.query in v}


def test_positive_cap_and_seeded_sampling() -> None:
    lines = [f"ask thing {chr(97 + i)}" for i in range(10)]
    intents = {("s", "i"): lines}
    vectors = {t: _vec(1, i / 10, 0) for i, t in enumerate(lines)}
    a, b = build_pairs(intents, vectors, seed=1), build_pairs(intents, vectors, seed=1)
    assert a == b and len(a) == intent_pairs.POSITIVES_PER_INTENT
    assert build_pairs(intents, vectors, seed=2) != a


def test_groups_are_stable_and_cover_all_three() -> None:
    assert group_of("ovos-skill-weather") == group_of("ovos-skill-weather")
    assert {group_of(s) for s in intent_pairs.SKILLS} == {0, 1, 2}


def test_missing_packages_say_how_to_install() -> None:
    with pytest.raises(FileNotFoundError, match="make eval-data"):
        installed_intent_files(["ovos-skill-surely-not-installed-here"])
