"""Look-alike vetoes. One-slot edits: two questions identical except one content span ("reset my
*password*" vs "reset my *username*", "tie a tie" vs "tie a *bow* tie"); also the same words
reordered ("Celsius to Fahrenheit" / "Fahrenheit to Celsius") and a different time ("tonight" /
"tomorrow night").

That is the shape of a look-alike: the template is kept and one thing is swapped, so the answer is
about something else. Paraphrases usually reword the template too ("how do I" -> "what's the way
to"). Compared on MiniLM word-pieces (uncased), punctuation and articles ignored; a swap whose two
spans mean nearly the same in context (plural vs singular, ``min_similarity``) is not counted.
"""

from __future__ import annotations

import difflib
import itertools
import re
from functools import lru_cache

import numpy as np

from app.caching.token_features import TokenView

FUNCTION_WORDS = frozenset((
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "i", "you", "we", "they", "me", "us",
    "it", "this", "that", "these", "those", "there", "here", "is", "are", "was", "were", "be", "been", "being",
    "am", "do", "does", "did", "can", "could", "should", "would", "will", "shall", "may", "might", "must", "how",
    "what", "which", "who", "whom", "whose", "when", "where", "why", "whats", "what's", "to", "of", "for", "on",
    "in", "at", "by", "with", "from", "into", "about", "as", "and", "or", "if", "so", "any", "some", "get", "way",
))
IGNORED = frozenset(["a", "an", "the", "?", ".", ",", "!", "'", "s", '"', ":", ";", "-", "(", ")"])
SWAP_SIMILAR = 0.8  # contextual similarity of two swapped spans above which they count as the same


@lru_cache(maxsize=1)
def _piece_sets() -> tuple[frozenset[int], frozenset[int]]:
    """(ignored piece ids, function-word piece ids) from the shared MiniLM tokenizer."""
    from app.embedding import get_embedder

    tok = get_embedder().model.tokenizer

    def ids(words) -> frozenset[int]:
        out: set[int] = set()
        for w in words:
            out.update(tok(w, add_special_tokens=False)["input_ids"])
        return frozenset(out)

    return ids(IGNORED), ids(FUNCTION_WORDS)


def one_slot_edit(query: TokenView, cached: TokenView, min_similarity: float = SWAP_SIMILAR) -> bool:
    """True when the two questions differ in exactly one contiguous span holding a content word."""
    ignored, function = _piece_sets()
    qi = [i for i, t in enumerate(query.ids.tolist()) if t not in ignored]
    ci = [i for i, t in enumerate(cached.ids.tolist()) if t not in ignored]
    qs, cs = [int(query.ids[i]) for i in qi], [int(cached.ids[i]) for i in ci]
    opcodes = difflib.SequenceMatcher(a=qs, b=cs, autojunk=False).get_opcodes()
    ops = [op for op in opcodes if op[0] != "equal"]
    shared = [t for op in opcodes if op[0] == "equal" for t in qs[op[1] : op[2]]]
    if len(ops) != 1 or not any(t not in function for t in shared):
        return False  # several edits, or no shared content word: a rewording, not a swapped slot
    _, i1, i2, j1, j2 = ops[0]
    if not any(t not in function for t in qs[i1:i2] + cs[j1:j2]):
        return False  # only function words changed ("how do I" / "how can I")
    if [t for t in qs[i1:i2] if t in function] != [t for t in cs[j1:j2] if t in function]:
        return False  # the template is reworded too ("how do I reset" / "what's the way to change")
    if i1 == i2 or j1 == j2:
        return True  # a content word added or dropped: "tie a tie" / "tie a bow tie"
    a = query.vecs[qi[i1:i2]].mean(axis=0)
    b = cached.vecs[ci[j1:j2]].mean(axis=0)
    similarity = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
    return similarity < min_similarity


_WORD = re.compile(r"[a-z]+")
TIME_WORDS = frozenset((
    "today", "tonight", "tomorrow", "yesterday", "morning", "afternoon", "evening", "night", "weekend", "weekday",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february", "march",
    "april", "june", "july", "august", "september", "october", "november", "december", "now", "later", "soon",
))


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in FUNCTION_WORDS and w not in IGNORED]


def _times(text: str) -> set[str]:
    return {w.removesuffix("s") if w.removesuffix("s") in TIME_WORDS else w
            for w in _WORD.findall(text.lower()) if w in TIME_WORDS or w.removesuffix("s") in TIME_WORDS}


def _positions(text: str) -> dict[str, int]:
    """First position of each content word among the words of ``text`` (articles left out)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in IGNORED]
    out: dict[str, int] = {}
    for i, w in enumerate(words):
        if w not in FUNCTION_WORDS:
            out.setdefault(w, i)
    return out


def reordered(query: str, cached: str) -> bool:
    """The same content words with two of them swapped across a link: "Celsius *to* Fahrenheit" / "Fahrenheit
    to Celsius", "does a dog *chase* a cat" / "does a cat chase a dog".

    Moving a word next to the one it modifies keeps the meaning ("high volume" / "volume high", "location of
    the ISS" / "the ISS location"), so a swapped pair only counts when the two words are apart (another word
    between them) in both questions.
    """
    a, b = _content_words(query), _content_words(cached)
    if len(a) < 2 or a == b or sorted(a) != sorted(b):
        return False
    pa, pb = _positions(query), _positions(cached)
    for x, y in itertools.combinations(pa, 2):
        flipped = (pa[x] < pa[y]) != (pb[x] < pb[y])
        if flipped and abs(pa[x] - pa[y]) > 1 and abs(pb[x] - pb[y]) > 1:
            return True
    return False


def time_mismatch(query: str, cached: str) -> bool:
    """Different time expressions: "tonight" / "tomorrow night", "today" / "tomorrow", "Sundays" / "Mondays"."""
    return _times(query) != _times(cached)


def lookalike_veto(query: str, cached: str, query_view: TokenView, cached_view: TokenView) -> bool:
    """The look-alike vetoes of the balanced level: a one-slot edit, a reordering, another time."""
    return (one_slot_edit(query_view, cached_view) or reordered(query, cached) or time_mismatch(query, cached))

