"""Calibration texts for AWQ, read from a local file (no dataset hub).

Formats: ``.jsonl`` (one JSON object per line with ``text``, ``prompt`` or chat ``messages``, or a bare
JSON string), ``.txt`` (one sample per non-empty line), ``.json`` (a list of those, or
``{"texts": [...]}``). Without a file the default set shipped in ``quantize/artifacts/calibration.json``
(64 varied prompts written for this project) is used.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_CALIBRATION = Path(__file__).resolve().parent / "artifacts" / "calibration.json"


class CalibrationError(ValueError):
    """The calibration file is missing, unreadable or holds no usable sample."""


def _sample_text(item: object, where: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("text", "prompt", "content"):
            if isinstance(item.get(key), str):
                return item[key]
        messages = item.get("messages")
        if isinstance(messages, list):
            turns = [m for m in messages if isinstance(m, dict)]
            return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in turns)
    raise CalibrationError(f"{where}: expected a string or an object with 'text', 'prompt' or 'messages'")


def load_calibration(path: str | Path | None = None, samples: int | None = None) -> list[str]:
    """Calibration texts from ``path`` (default set when ``None``), stripped, empties dropped, at most ``samples``."""
    file = Path(path) if path is not None else DEFAULT_CALIBRATION
    if not file.is_file():
        raise CalibrationError(f"calibration file not found: {file}")
    raw = file.read_text(encoding="utf-8")
    suffix = file.suffix.lower()
    texts: list[str] = []
    try:
        if suffix == ".jsonl":
            for n, line in enumerate(raw.splitlines(), 1):
                if line.strip():
                    texts.append(_sample_text(json.loads(line), f"{file}:{n}"))
        elif suffix == ".json":
            data = json.loads(raw)
            items = data.get("texts") if isinstance(data, dict) else data
            if not isinstance(items, list):
                raise CalibrationError(f"{file}: expected a JSON list or an object with a 'texts' list")
            texts = [_sample_text(item, f"{file}[{i}]") for i, item in enumerate(items)]
        else:  # .txt and anything else: one sample per line
            texts = raw.splitlines()
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{file}: invalid JSON ({exc})") from exc
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise CalibrationError(f"calibration file has no samples: {file}")
    if samples is not None:
        if samples < 1:
            raise CalibrationError(f"--samples must be >= 1 (got {samples})")
        texts = texts[:samples]
    return texts
