"""Cache entries and the in-memory LRU store bounded by entry count and bytes."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class CachedResponse:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    created: float


@dataclass
class CacheHit:
    response: CachedResponse
    layer: str  # "exact" | "semantic" | "stale"
    similarity: float | None = None


@dataclass
class Entry:
    id: int
    tenant: str
    scope: str
    context: str  # index partition: scope + earlier turns
    exact: str
    question: str
    embedding: np.ndarray | None
    response: CachedResponse
    max_tokens: int | None
    expires_at: float
    embedding_kind: str = "minilm-fp32"  # app.embedding.embedding_kind() of the process that stored it

    def size(self) -> int:
        emb = 0 if self.embedding is None else self.embedding.nbytes
        return 200 + len(self.question) + len(self.response.text) + emb

    def expired(self, now: float | None = None) -> bool:
        return (now or time.time()) >= self.expires_at

    def serves(self, max_tokens: int | None) -> bool:
        """A cached answer fits a request if it would not have been cut shorter or longer by max_tokens."""
        if max_tokens is None or self.max_tokens == max_tokens:
            return True
        if self.response.finish_reason == "length":
            return False
        return self.response.completion_tokens <= max_tokens

    def to_redis(self) -> dict[str, bytes]:
        meta = {k: v for k, v in asdict(self).items() if k not in ("embedding", "response")}
        meta["response"] = asdict(self.response)
        fields = {"meta": json.dumps(meta).encode()}
        if self.embedding is not None:
            fields["emb"] = np.asarray(self.embedding, dtype=np.float32).tobytes()
        return fields

    @classmethod
    def from_redis(cls, fields: dict[bytes, bytes]) -> Entry:
        meta = json.loads(fields[b"meta"])
        emb = fields.get(b"emb")
        meta["embedding"] = np.frombuffer(emb, dtype=np.float32).copy() if emb else None
        meta["response"] = CachedResponse(**meta["response"])
        return cls(**meta)


class LRUStore:
    """id -> Entry in recency order, plus exact-key lookup; evicts the least recently used."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.by_exact: dict[str, int] = {}
        self.bytes = 0

    def get(self, entry_id: int) -> Entry | None:
        entry = self.entries.get(entry_id)
        if entry is not None:
            self.entries.move_to_end(entry_id)
        return entry

    def get_exact(self, key: str) -> Entry | None:
        entry_id = self.by_exact.get(key)
        return None if entry_id is None else self.get(entry_id)

    def put(self, entry: Entry) -> list[Entry]:
        """Insert (replacing an entry with the same exact key); return the entries evicted to stay in bounds."""
        evicted: list[Entry] = []
        old = self.by_exact.get(entry.exact)
        if old is not None and old in self.entries:
            evicted.append(self.pop(old))
        self.entries[entry.id] = entry
        self.by_exact[entry.exact] = entry.id
        self.bytes += entry.size()
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self.entries))
            if oldest == entry.id:
                break
            evicted.append(self.pop(oldest))
        return evicted

    def pop(self, entry_id: int) -> Entry:
        entry = self.entries.pop(entry_id)
        if self.by_exact.get(entry.exact) == entry_id:
            del self.by_exact[entry.exact]
        self.bytes -= entry.size()
        return entry

    def __len__(self) -> int:
        return len(self.entries)
