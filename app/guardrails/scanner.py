"""One left-to-right scan that finds entities in text, shared by unary and streaming redaction.

At each position the entities are tried in priority order; the first valid, non-ignored match is taken
and the scan jumps past it (and its tail). The scan is a pure function of the text, so a stream cut at
any boundaries yields exactly the unary result: streaming mode stops at the first position whose outcome
could still change with more text (a partial match, or a match touching the end), and resumes there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.guardrails.entities import ENTITIES, Compiled, compile_entity

CONTEXT_CHARS = 8  # original text kept before the resume point, for lookbehinds and \b


@dataclass(slots=True)
class Hit:
    entity: str
    start: int
    end: int


@dataclass(slots=True)
class ScanResult:
    text: str  # the scanned part with placeholders
    consumed: int  # scanned up to here (absolute position)
    hits: list[Hit] = field(default_factory=list)
    open_entity: Compiled | None = None  # a tail/until still absorbing at the end (streaming)
    stopped: Hit | None = None  # a ``stop_on`` entity was found: ``text`` ends before it


class Scanner:
    """Finds ``names`` (entity names, priority kept from ENTITIES) honouring an ignore list per entity."""

    hold_limit_extra = 1  # a trailing lookahead reads one character past a match

    def __init__(self, names: Iterable[str], ignore: Mapping[str, Iterable[str]] | None = None) -> None:
        wanted = set(names)
        unknown = wanted - set(ENTITIES)
        if unknown:
            raise ValueError(f"unknown entities: {sorted(unknown)}")
        self.compiled = [compile_entity(e) for name, e in ENTITIES.items() if name in wanted]
        self.ignore = {k: frozenset(v.strip().lower() for v in vals) for k, vals in (ignore or {}).items()}
        self.max_len = max((c.max_len for c in self.compiled), default=0)

    def _accept(self, c: Compiled, m: re.Match[str]) -> bool:
        keep = m.groupdict().get("keep") or ""
        value = m.group(0)[len(keep):]
        if c.entity.validator is not None and not c.entity.validator(value):
            return False
        return value.strip().lower() not in self.ignore.get(c.entity.name, ())

    def scan(self, text: str, pos: int = 0, final: bool = True, stop_on: frozenset[str] = frozenset()) -> ScanResult:
        """Scan ``text[pos:]`` (``text[:pos]`` is context only). With ``final`` False, stop at the first
        position whose outcome more text could change; ``consumed`` says where the next scan resumes.
        The first entity named in ``stop_on`` ends the scan (block actions)."""
        out: list[str] = []
        hits: list[Hit] = []
        n, p = len(text), pos
        nxt: list[re.Match[str] | None] = [None] * len(self.compiled)  # each entity's next match from p
        stale = [True] * len(self.compiled)

        def next_start(k: int) -> int:
            m = nxt[k]
            if stale[k] or (m is not None and m.start() < p):
                m = nxt[k] = self.compiled[k].fast.search(text, p)
                stale[k] = False
            return n if m is None else m.start()

        while True:
            u = n if final else self._frontier(text, p)
            while p < u:
                q = min((next_start(k) for k in range(len(self.compiled))), default=n)
                if q >= u:
                    out.append(text[p:u])
                    p = u
                    break
                chosen = next(((c, m) for c, m in zip(self.compiled, nxt, strict=True)
                               if m is not None and m.start() == q and self._accept(c, m)), None)
                if chosen is None:
                    out.append(text[p:q + 1])
                    p = q + 1
                    continue
                c, em = chosen
                out.append(text[p:q])
                if c.entity.name in stop_on:
                    hit = Hit(c.entity.name, q, em.end())
                    return ScanResult("".join(out), q, [*hits, hit], stopped=hit)
                out.append((em.groupdict().get("keep") or "") + c.entity.placeholder)
                end, still_open = self._extend(c, text, em.end(), final)
                hits.append(Hit(c.entity.name, q, end))
                if still_open:
                    return ScanResult("".join(out), n, hits, open_entity=c)
                p = end
            if p >= n or (p == u and u < n):
                return ScanResult("".join(out), min(p, n), hits)

    def _frontier(self, text: str, p: int) -> int:
        """The first position >= ``p`` where a match could still start or change with more text, else len.

        Positions further than an entity's span + 1 from the end are settled for it; nearer ones are
        settled when no full or partial match of it starts there.
        """
        n = len(text)
        for i in range(max(p, n - self.max_len - 1), n):
            ch = text[i]
            for c in self.compiled:
                if i >= n - c.max_len - 1 and c.may_start(ch) and c.pattern.match(text, i, partial=True) is not None:
                    return i
        return n

    @staticmethod
    def _extend(c: Compiled, text: str, end: int, final: bool) -> tuple[int, bool]:
        """Absorb the entity's tail after ``end``: (new end, still absorbing at the end of ``text``)."""
        n = len(text)
        if c.tail is not None:
            t = c.tail.match(text, end)
            end = t.end() if t else end
            return end, end >= n and not final
        if c.until is not None:
            u = c.until.search(text, end)
            if u is not None:
                return u.end(), False
            return n, not final
        return end, False
