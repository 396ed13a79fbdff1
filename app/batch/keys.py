"""Redis key layout of the batch lane (one prefix; everything of a batch under ``{p}:batch:{id}``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

LANES = ("async", "batch")  # read in this order: async single requests before batch lines
GROUP = "workers"


def new_id(kind: str) -> str:
    """OpenAI-style ids: ``file-…``, ``batch_…``, ``asyncreq_…``."""
    sep = "-" if kind == "file" else "_"
    return f"{kind}{sep}{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Keys:
    prefix: str

    def file(self, fid: str) -> str:
        return f"{self.prefix}:file:{fid}"

    def chunks(self, fid: str) -> str:
        return f"{self.prefix}:file:{fid}:chunks"

    def files(self, tenant: str) -> str:
        return f"{self.prefix}:files:{tenant}"

    def batch(self, bid: str) -> str:
        return f"{self.prefix}:batch:{bid}"

    def lines(self, bid: str) -> str:  # line number -> input line
        return f"{self.prefix}:batch:{bid}:in"

    def results(self, bid: str) -> str:  # line number -> "o"|"e" + output line (HSETNX: one per line)
        return f"{self.prefix}:batch:{bid}:res"

    def running(self, bid: str) -> str:  # line number -> start time (lines in flight)
        return f"{self.prefix}:batch:{bid}:run"

    def attempts(self, bid: str) -> str:
        return f"{self.prefix}:batch:{bid}:att"

    def batches(self, tenant: str) -> str:
        return f"{self.prefix}:batches:{tenant}"

    @property
    def active(self) -> str:  # batches not yet terminal (the sweeper's work list)
        return f"{self.prefix}:active"

    def job(self, jid: str) -> str:
        return f"{self.prefix}:job:{jid}"

    def stream(self, lane: str) -> str:
        return f"{self.prefix}:q:{lane}"

    def rate(self, tenant: str, window: int) -> str:
        return f"{self.prefix}:rate:{tenant}:{window}"

    def batch_keys(self, bid: str) -> list[str]:
        return [self.batch(bid), self.lines(bid), self.results(bid), self.running(bid), self.attempts(bid)]
