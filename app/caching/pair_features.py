"""Features of a (query, cached question) pair for the semantic-hit verifier.

Cosine similarity alone cannot tell "10 miles" from "100 miles" or "open on Sundays" from "closed on
Sundays". These features expose exactly what look-alikes differ in: numbers, negations, named
entities, question type, and the words one side has that the other lacks; plus the embedding
interaction (|a-b|, a*b) that lets the classifier learn which directions of difference matter.
"""

from __future__ import annotations

import re

import numpy as np

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_ENTITY = re.compile(r"(?<!^)(?<![.?!]\s)\b[A-Z][a-zA-Z]+")
NEGATIONS = {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "can't",
             "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't", "won't", "wouldn't",
             "shouldn't", "couldn't", "haven't", "hasn't", "hadn't"}
WH = ("what", "why", "how", "when", "where", "who", "which", "whom", "whose", "is", "are", "can", "do", "does",
      "should", "will")
STOP = {"a", "an", "the", "of", "to", "in", "on", "for", "is", "are", "was", "were", "be", "and", "or", "i", "my",
        "me", "you", "your", "it", "its", "this", "that", "do", "does", "did", "what", "how", "why", "can", "with",
        "at", "by", "from", "as", "if", "so", "some", "any", "we", "they", "he", "she", "his", "her", "their",
        "there", "which", "who", "when", "where", "should", "would", "could", "will", "about", "get", "have", "has"}

ANTONYMS = [
    ("buy", "sell"), ("open", "close"), ("open", "closed"), ("on", "off"), ("increase", "decrease"),
    ("upgrade", "downgrade"), ("soft", "hard"), ("cancel", "renew"), ("create", "delete"), ("enable", "disable"),
    ("add", "remove"), ("start", "stop"), ("before", "after"), ("min", "max"), ("minimum", "maximum"),
    ("up", "down"), ("high", "low"), ("best", "worst"), ("more", "less"), ("cheap", "expensive"), ("hot", "cold"),
    ("win", "lose"), ("import", "export"), ("push", "pull"), ("login", "logout"), ("accept", "reject"),
    ("include", "exclude"), ("male", "female"), ("true", "false"), ("first", "last"), ("lend", "borrow"),
    ("enter", "exit"), ("arrive", "depart"), ("join", "leave"), ("encrypt", "decrypt"), ("install", "uninstall"),
    ("subscribe", "unsubscribe"), ("lock", "unlock"), ("mute", "unmute"), ("rise", "fall"), ("gain", "lose"),
    ("positive", "negative"), ("legal", "illegal"), ("safe", "unsafe"), ("possible", "impossible"),
    ("with", "without"), ("above", "below"), ("inside", "outside"), ("upload", "download"), ("send", "receive"),
]
_ANTONYM_PAIRS = {frozenset(p) for p in ANTONYMS}

HAND_FEATURES = [
    "cosine", "jaccard", "content_jaccard", "content_diff", "content_diff_share", "numbers_differ",
    "number_diff_count", "negation_differ", "entity_jaccard", "entity_diff", "wh_differ", "log_len_ratio",
    "len_min", "first_content_differ", "single_substitution",
]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if (a or b) else 1.0


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def hard_veto(a: str, b: str) -> str | None:
    """A reason the two questions cannot share an answer, whatever their similarity; else None.

    Different numbers (or the same numbers swapped in an otherwise identical question: "18 minus 3" vs
    "3 minus 18"), a negation on one side only, or an antonym swapped in: the look-alikes that embeddings
    rate as near-identical.
    """
    ta, tb = _tokens(a), _tokens(b)
    if set(_NUMBER.findall(a)) != set(_NUMBER.findall(b)) or _numbers_swapped(ta, tb):
        return "numbers"
    if (sum(t in NEGATIONS for t in ta) > 0) != (sum(t in NEGATIONS for t in tb) > 0):
        return "negation"
    only_a, only_b = set(ta) - set(tb), set(tb) - set(ta)
    for x in only_a:
        for y in only_b:
            if frozenset((x, y)) in _ANTONYM_PAIRS:
                return "antonym"
    return None


def _numbers_swapped(ta: list[str], tb: list[str]) -> bool:
    """Same words in the same order, numbers in another order (none such among QQP's 20,000 dev pairs)."""
    na, nb = [t for t in ta if _NUMBER.fullmatch(t)], [t for t in tb if _NUMBER.fullmatch(t)]
    if len(na) < 2 or na == nb or len(ta) != len(tb):
        return False
    return all(x == y or (_NUMBER.fullmatch(x) and _NUMBER.fullmatch(y)) for x, y in zip(ta, tb, strict=True))


def _wh(tokens: list[str]) -> str:
    return next((t for t in tokens if t in WH), "")


def hand_features(a: str, b: str, cosine: float) -> np.ndarray:
    ta, tb = _tokens(a), _tokens(b)
    sa, sb = set(ta), set(tb)
    ca, cb = sa - STOP, sb - STOP
    na, nb = set(_NUMBER.findall(a)), set(_NUMBER.findall(b))
    ea, eb = set(_ENTITY.findall(a)), set(_ENTITY.findall(b))
    diff = ca ^ cb
    sub_a, sub_b = {_stem(w) for w in ca} - {_stem(w) for w in cb}, {_stem(w) for w in cb} - {_stem(w) for w in ca}
    neg_a, neg_b = sum(t in NEGATIONS for t in ta), sum(t in NEGATIONS for t in tb)
    first_a = next((t for t in ta if t not in STOP), "")
    first_b = next((t for t in tb if t not in STOP), "")
    return np.array(
        [
            cosine,
            _jaccard(sa, sb),
            _jaccard(ca, cb),
            min(len(diff), 20) / 20,
            len(diff) / max(len(ca | cb), 1),
            float(na != nb),
            min(len(na ^ nb), 5) / 5,
            float((neg_a > 0) != (neg_b > 0)),
            _jaccard(ea, eb),
            min(len(ea ^ eb), 5) / 5,
            float(_wh(ta) != _wh(tb)),
            abs(np.log((len(ta) + 1) / (len(tb) + 1))),
            min(len(ta), len(tb)) / 30,
            float(first_a != first_b),
            float(len(sub_a) == 1 and len(sub_b) == 1),
        ],
        dtype=np.float32,
    )


def pair_features(a: str, b: str, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
    """[hand features | |ea-eb| | ea*eb] for unit-norm embeddings ea, eb."""
    cosine = float(np.dot(ea, eb))
    return np.concatenate([hand_features(a, b, cosine), np.abs(ea - eb), ea * eb]).astype(np.float32)
