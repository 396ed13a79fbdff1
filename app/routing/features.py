"""Cheap structural features of a prompt (no model needed), complementing the sentence embedding."""

from __future__ import annotations

import math
import re

import numpy as np

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_MATH = re.compile(r"[=+\-*/^%×÷<>]")
_OPTION = re.compile(r"^\s*[A-D][.)]\s", re.MULTILINE)
_CODE = re.compile(r"```|\bdef |\bclass |;\s*$|\{|\}", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z]+")

FEATURE_NAMES = [
    "log_chars",
    "log_words",
    "log_lines",
    "numbers_per_word",
    "log_numbers",
    "math_symbols_per_char",
    "has_options",
    "question_marks",
    "code_markers",
    "mean_word_len",
    "long_word_share",
    "uppercase_share",
]


def structural_features(text: str) -> np.ndarray:
    """A fixed-length float32 vector describing the prompt's shape (length, numbers, maths, options, code)."""
    words = _WORD.findall(text)
    n_words = max(len(words), 1)
    numbers = _NUMBER.findall(text)
    n_chars = max(len(text), 1)
    long_words = sum(1 for w in words if len(w) >= 9)
    upper = sum(1 for ch in text if ch.isupper())
    values = [
        math.log1p(len(text)),
        math.log1p(len(words)),
        math.log1p(text.count("\n")),
        len(numbers) / n_words,
        math.log1p(len(numbers)),
        len(_MATH.findall(text)) / n_chars * 10,
        1.0 if len(_OPTION.findall(text)) >= 2 else 0.0,
        min(text.count("?"), 5) / 5,
        min(len(_CODE.findall(text)), 10) / 10,
        sum(len(w) for w in words) / n_words / 10,
        long_words / n_words,
        upper / n_chars * 10,
    ]
    return np.asarray(values, dtype=np.float32)


def feature_matrix(texts: list[str], embeddings: np.ndarray) -> np.ndarray:
    """[embedding | structural] for each text."""
    structural = np.stack([structural_features(t) for t in texts]) if texts else np.zeros((0, len(FEATURE_NAMES)))
    return np.hstack([embeddings.astype(np.float32), structural.astype(np.float32)])
