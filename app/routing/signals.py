"""Task signals that carry across domains: what kind of work a prompt asks for, not what it is about.

The sentence embedding knows the topic; these say whether the prompt asks for code, a proof, a
plan, long-form writing, a quick lookup, an edit of pasted text, how long the answer should be,
and how deep the conversation is. Plain regular expressions, no model, ~0.1 ms per prompt.
"""

from __future__ import annotations

import math
import re

import numpy as np


def _words(*items: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(items) + r")\b", re.IGNORECASE)


_CODE_LANG = _words(r"python", r"javascript", r"typescript", r"java", r"c\+\+", r"c#", r"rust", r"golang", r"go",
                    r"sql", r"bash", r"shell", r"kotlin", r"swift", r"ruby", r"php", r"scala", r"haskell", r"c",
                    r"react", r"django", r"fastapi", r"flask", r"node(?:\.js)?", r"kubernetes", r"docker", r"redis",
                    r"postgres(?:ql)?", r"mysql", r"pytorch", r"tensorflow", r"pandas", r"numpy", r"regex")
_CODE_TASK = _words(r"implement\w*", r"function", r"class", r"method", r"algorithm\w*", r"debug\w*", r"refactor\w*",
                    r"compile\w*", r"bug", r"race", r"thread\w*", r"async\w*", r"concurren\w*",
                    r"mutex\w*", r"queue", r"heap", r"tree", r"graph", r"parser", r"api", r"endpoint", r"schema",
                    r"query", r"index\w*", r"unit tests?", r"script", r"program", r"server", r"middleware",
                    r"cache", r"memory leak", r"exception", r"error", r"stack trace", r"complexity")
_CODE_SYNTAX = re.compile(r"```|\bdef |\bfn |\breturn\b|=>|->|::|\{|\}|;\s*$|\(\)|==|!=|\[\]|</?\w+>", re.MULTILINE)
_MATH_WORD = _words(r"prove\w*", r"proofs?", r"derive\w*", r"derivation", r"integrals?", r"integrate", r"derivative",
                    r"differentiat\w*", r"equation\w*", r"solv\w*", r"probabilit\w*", r"expected", r"matri(?:x|ces)",
                    r"determinant", r"eigen\w*", r"theorem", r"series", r"converge\w*", r"prime\w*", r"modulo", r"mod",
                    r"recurrence", r"induction", r"irrational", r"polynomial", r"variance", r"distribution",
                    r"combinatori\w*", r"permutations?", r"factorial", r"logarithm\w*", r"limit", r"vector\w*",
                    r"group", r"isomorph\w*", r"optimi[sz]\w*", r"maximum", r"minimum")
_MATH_SYM = re.compile(r"\^|\\frac|\\sum|\\int|√|∑|∫|\b[a-z]\s*\(\s*[a-z]\s*\)|\b\d+\s*[x*/^]\s*\d+|[a-z]\^?\d|[=<>≤≥]")
_PROOF = _words(r"prove", r"proof", r"show that", r"justify", r"optimal", r"derive", r"why does", r"why is",
                r"what is wrong", r"find the (?:flaw|error)", r"is it possible", r"paradox")
_REASON = _words(r"step by step", r"explain why", r"reasoning", r"puzzle", r"riddle", r"logic\w*", r"deduce",
                 r"how many ways", r"constraints?", r"scenarios?", r"hypothes\w+", r"trade-?offs?", r"compare",
                 r"comparison", r"versus", r"vs\.?", r"analy[sz]\w*", r"evaluate", r"critique", r"weigh", r"assess",
                 r"pros and cons", r"implications?", r"causes?", r"mechanisms?", r"diagnose", r"strategy",
                 r"confound\w*", r"statistic\w*", r"significan\w*", r"counterexample", r"case analysis")
_DESIGN = _words(r"design", r"architect\w*", r"plan", r"schedule", r"itinerary", r"roadmap", r"scale", r"scaling",
                 r"system", r"pipeline", r"framework", r"program", r"budget", r"allocate", r"requirements",
                 r"proposal", r"service")
_LONG_FORM = _words(r"story", r"essay", r"article", r"blog post", r"speech", r"chapter", r"screenplay", r"scene",
                    r"novel", r"sonnet", r"poem\w*", r"verse", r"cover letter", r"proposal", r"report", r"document",
                    r"script")
_SHORT_FORM = _words(r"haiku", r"slogan", r"caption", r"tweet", r"title", r"subject line", r"hashtag",
                     r"one-liner", r"text message", r"quick text", r"note", r"names? for", r"bio")
_EXPERT = _words(r"legal", r"clause", r"contract", r"statute", r"tax\w*", r"mortgage", r"loan",
                 r"equity", r"valuation", r"quantum", r"vaccine\w*", r"clinical",
                 r"monetary", r"econom\w*", r"philosoph\w*", r"theor(?:y|ies)", r"physics",
                 r"thermodynamic\w*", r"cryptograph\w*", r"distributed",
                 r"consensus", r"consistency", r"eventual", r"rights")
_LOOKUP_START = re.compile(r"^\s*(?:what(?:'s| is| are| was| does)|who|when|where|which|how many|how much|"
                           r"define|is an?|is the|what year)\b", re.IGNORECASE)
_CHAT = _words(r"hi", r"hello", r"hey", r"thanks", r"thank you", r"good morning", r"lol", r"joke", r"pun",
               r"recommend", r"suggest\w*", r"ideas?", r"tips?", r"fun fact", r"bored", r"cheer")
_EDIT = _words(r"translate", r"fix the (?:grammar|spelling|typos|punctuation)", r"correct", r"rewrite",
               r"rephrase", r"summari[sz]e", r"shorten", r"make (?:this|it) (?:more|shorter|sound)", r"extract",
               r"pull out", r"capitali[sz]e", r"bullet list", r"alphabetical", r"proofread", r"positive or negative",
               r"turn (?:this|these) into", r"typos?", r"polite", r"formal", r"friendlier")
_LENGTH_LONG = re.compile(r"\b\d[\d,]*[-\s]*(?:words?|pages?|paragraphs?|minutes?)\b|\b(?:detailed|in depth|"
                          r"in-depth|comprehensive|thorough\w*|full|complete|day-by-day|each step|every step|"
                          r"walk (?:me )?through)\b", re.IGNORECASE)
_LENGTH_SHORT = re.compile(r"\b(?:one|two|a single|1|2)[-\s](?:sentence|line|word)s?\b|\b(?:brief\w*|short\w*|"
                           r"quick\w*|just|simpl[ey]|in a word|tl;?dr|one-line)\b", re.IGNORECASE)
_PREVIOUS = _words(r"previous", r"above", r"your (?:answer|response|reply)", r"that (?:code|answer|story)",
                   r"earlier", r"again", r"now (?:make|add|do|rewrite|change)")
_CONSTRAINT = _words(r"must", r"exactly", r"without", r"each", r"every", r"at least", r"at most", r"no more than",
                     r"only", r"handling", r"including", r"include", r"with", r"preserv\w*", r"strict\w*",
                     r"ensure", r"safe", r"correct(?:ly)?", r"atomic", r"under \$?\d")
_SENTENCE = re.compile(r"[.!?]+(?:\s|$)")
_DIGIT = re.compile(r"\d")

SIGNAL_NAMES = [
    "code_lang", "code_task", "code_syntax", "math_words", "math_symbols", "proof", "reasoning", "design",
    "long_form", "short_form", "expert", "lookup_start", "chat", "edit", "asks_long", "asks_short",
    "refers_previous", "constraints", "log_chars", "log_sentences", "question_share", "digits_share",
    "log_turns", "short_prompt",
]


def _count(pattern: re.Pattern[str], text: str, cap: int = 5) -> float:
    return min(len(pattern.findall(text)), cap) / cap


def _instruction(text: str) -> str:
    """The part that states the task: the last sentence or two (pasted material usually comes first or after ':')."""
    head, sep, _ = text.partition(":")
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    tail = " ".join(sentences[-2:]) if sentences else text
    return (head + " " + tail) if sep and len(head) < 200 else tail


def task_signals(text: str, turns: int = 1) -> np.ndarray:
    """A fixed-length float32 vector (``SIGNAL_NAMES``) for one user turn; ``turns``: user turns so far."""
    instruction = _instruction(text)
    n_chars = max(len(text), 1)
    sentences = max(len([s for s in _SENTENCE.split(text) if s.strip()]), 1)
    values = [
        _count(_CODE_LANG, text, 3),
        _count(_CODE_TASK, text),
        _count(_CODE_SYNTAX, text),
        _count(_MATH_WORD, text, 3),
        _count(_MATH_SYM, text),
        _count(_PROOF, text, 2),
        _count(_REASON, text, 3),
        _count(_DESIGN, text, 3),
        _count(_LONG_FORM, instruction, 2),
        _count(_SHORT_FORM, instruction, 2),
        _count(_EXPERT, text, 3),
        1.0 if _LOOKUP_START.match(text) else 0.0,
        _count(_CHAT, text, 3),
        _count(_EDIT, instruction, 2),
        _count(_LENGTH_LONG, text, 2),
        _count(_LENGTH_SHORT, instruction, 2),
        _count(_PREVIOUS, text, 2),
        _count(_CONSTRAINT, text, 6),
        math.log1p(len(text)) / 8,
        math.log1p(sentences) / 3,
        min(len(instruction) / n_chars, 1.0),
        len(_DIGIT.findall(text)) / n_chars * 10,
        math.log(max(turns, 1)),
        1.0 if len(text) < 60 else 0.0,
    ]
    return np.asarray(values, dtype=np.float32)


def signal_matrix(texts: list[str], turns: list[int] | None = None) -> np.ndarray:
    turns = turns or [1] * len(texts)
    if not texts:
        return np.zeros((0, len(SIGNAL_NAMES)), dtype=np.float32)
    return np.stack([task_signals(t, n) for t, n in zip(texts, turns, strict=True)])
