"""Your own traffic as cache data: candidate question pairs from the request log, to label and choose on.

The request log (``observability.request_log.path``, JSON lines, rotated copies included; PII already
redacted) holds each request's last user turn and tenant. ``llmgw cache export-pairs`` pairs every logged
question with its nearest *earlier* question of the same tenant (MiniLM cosine >= ``gate``): that is the
candidate the semantic cache would have put in front of the verifier had the earlier answer been cached.
Each row is written with ``"same": null``; a reviewer sets it to true/false, and ``llmgw cache eval
--choose-pairs FILE`` adds the labelled rows to the choose sets (the automatic rule of
``quality.choose_balanced`` then picks the balanced point with your pairs in it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from app.observability.request_log import RequestLogRecord


def log_questions(records: Iterable[RequestLogRecord]) -> list[tuple[str, str]]:
    """(tenant, last user turn) of each successful chat/completion record, oldest first, duplicates dropped."""
    out, seen = [], set()
    for r in records:
        if r.status != 200:
            continue
        if r.messages:
            turns = [m.get("content") or "" for m in r.messages if m.get("role") == "user"]
            text = turns[-1] if turns else ""
        else:
            text = r.prompt or ""
        text = " ".join(text.split())
        if not text or (r.tenant, text.lower()) in seen:
            continue
        seen.add((r.tenant, text.lower()))
        out.append((r.tenant, text))
    return out


def candidate_pairs(questions: list[tuple[str, str]], vectors: np.ndarray, gate: float) -> list[dict]:
    """Each question with its nearest earlier question of the same tenant, when the cosine reaches ``gate``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    rows = []
    for i in range(1, len(questions)):
        tenant, query = questions[i]
        earlier = [j for j in range(i) if questions[j][0] == tenant]
        if not earlier:
            continue
        sims = vectors[earlier] @ vectors[i]
        k = int(np.argmax(sims))
        if sims[k] >= gate:
            rows.append({"a": questions[earlier[k]][1], "b": query, "tenant": tenant,
                         "cosine": round(float(sims[k]), 4), "same": None})
    return rows


def write_pairs(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def labelled_pairs(path: Path) -> list[tuple[str, str, bool]]:
    """(cached, query, same) of the rows a reviewer labelled; unlabelled rows (``same`` null) are skipped."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        same = row.get("same")
        if same is None:
            continue
        if not isinstance(same, bool) or not isinstance(row.get("a"), str) or not isinstance(row.get("b"), str):
            raise ValueError(f"{path}:{n}: need string 'a', 'b' and true/false/null 'same'")
        out.append((row["a"], row["b"], same))
    return out
