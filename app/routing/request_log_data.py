"""Your own traffic as router data: prompts (and labels, where the log has them) from the request log.

The request log (``observability.request_log.path``, JSON lines, rotated copies included) records the
messages, the route taken and an ``evaluation`` dict. A record gives:

* a **calibration prompt** (for ``large_share``) when it was a ``model: auto`` chat or completion
  request: its last user turn and the number of user turns;
* a **label** when ``evaluation["router_label"]`` is ``"large"`` / ``"small"`` (set by a reviewer or a
  shadow comparison of both pools), or, failing that, when it was routed to the small pool and the
  online judge scored it (``evaluation["judge"]["score"]``, 0..1): below ``judge_floor`` -> the large
  model was needed, at or above -> the small one sufficed. Large-pool answers without an explicit
  label say nothing about the small model and are not labelled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from app.observability.request_log import RequestLogRecord, iter_all_records, iter_records
from app.routing.datasets import LabelledPrompts

JUDGE_FLOOR = 0.5


@dataclass
class LogPrompt:
    text: str
    turns: int
    tenant: str
    label: bool | None


def _user_turns(record: RequestLogRecord) -> list[str]:
    if record.messages:
        return [m.get("content") or "" for m in record.messages if m.get("role") == "user"]
    return [record.prompt] if record.prompt else []


def record_label(record: RequestLogRecord, judge_floor: float = JUDGE_FLOOR) -> bool | None:
    explicit = (record.evaluation or {}).get("router_label")
    if explicit in ("large", "small"):
        return explicit == "large"
    judge = (record.evaluation or {}).get("judge")
    if record.route == "small" and isinstance(judge, dict) and isinstance(judge.get("score"), int | float):
        return float(judge["score"]) < judge_floor
    return None


def log_prompts(records: Iterable[RequestLogRecord], auto_models: tuple[str, ...] = ("auto",),
                judge_floor: float = JUDGE_FLOOR) -> list[LogPrompt]:
    """Routed, successful requests of the log as prompts (one per record, duplicates dropped)."""
    out, seen = [], set()
    for r in records:
        turns = _user_turns(r)
        if r.status != 200 or not turns or not turns[-1].strip():
            continue
        label = record_label(r, judge_floor)
        if r.model not in auto_models and label is None:
            continue
        key = (turns[-1], len(turns))
        if key in seen:
            continue
        seen.add(key)
        out.append(LogPrompt(turns[-1], len(turns), r.tenant, label))
    return out


def read_log(path: str, tenant: str | None = None, judge_floor: float = JUDGE_FLOOR) -> list[LogPrompt]:
    records = iter_all_records(path) if tenant is None else iter_records(path, tenant=tenant)
    return log_prompts(records, judge_floor=judge_floor)


def labelled(prompts: list[LogPrompt]) -> LabelledPrompts:
    rows = [p for p in prompts if p.label is not None]
    return LabelledPrompts([p.text for p in rows], np.array([bool(p.label) for p in rows], dtype=bool),
                           ["log"] * len(rows), ["log"] * len(rows), [p.turns for p in rows],
                           [f"log:{i}" for i in range(len(rows))])
