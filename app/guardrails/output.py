"""Output guardrails: PII and secrets in answers, redacted or blocked, unary and streaming.

``OutputGuard(config).check(text)`` gives the answer to send; ``StreamRedactor`` does the same on a stream
of deltas, holding back only text that could still be part of a match (never more than the longest
entity span), so a secret split across chunks is never emitted. Both run the same scan
(app/guardrails/scanner.py), so a stream yields exactly the unary result whatever its chunking.
Block: unary answers are replaced by an empty message with ``finish_reason: content_filter``; a stream
stops before the finding and ends with ``finish_reason: content_filter`` (docs/decisions.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from app.errors import GuardrailUnavailableError
from app.guardrails.decisions import GuardDecision
from app.guardrails.entities import ENTITIES, Compiled
from app.guardrails.scanner import CONTEXT_CHARS, Hit, Scanner
from app.guardrails.settings import OutputGuardConfig

CONTENT_FILTER = "content_filter"


@dataclass(slots=True)
class OutputResult:
    text: str  # what to send (the original text in logging-only mode; "" when blocked)
    decisions: list[GuardDecision] = field(default_factory=list)
    blocked: bool = False  # send finish_reason "content_filter"


class OutputGuard:
    """Built once per (tenant) config; ``check`` / ``redact_text`` / ``stream`` per answer."""

    def __init__(self, config: OutputGuardConfig) -> None:
        self.config = config
        self.actions: dict[str, str] = {}
        ignore: dict[str, list[str]] = {}
        for group in (config.pii, config.secrets):
            if not (config.enabled and group.enabled) or group.action == "allow":
                continue
            for name in group.entities:
                self.actions[name] = group.action
            for name, values in group.ignore.items():
                ignore.setdefault(name, []).extend(values)
        self.scanner = Scanner(self.actions, ignore)
        self.block_on = frozenset() if config.logging_only else frozenset(
            n for n, a in self.actions.items() if a == "block")

    @property
    def active(self) -> bool:
        return bool(self.actions)

    def decisions_for(self, hits: list[Hit]) -> list[GuardDecision]:
        counts = Counter(h.entity for h in hits)
        out = []
        for name, n in counts.items():
            action = "log" if self.config.logging_only else self.actions.get(name, "redact")
            kind = ENTITIES[name].kind
            out.append(GuardDecision("output", f"{kind}.{name}", action, f"{kind}_{name.lower()}", count=n))
        return out

    def check(self, text: str) -> OutputResult:
        """Scan a whole answer. Raises GuardrailUnavailableError if the scan fails and fail_mode is closed."""
        if not self.active or not text:
            return OutputResult(text)
        try:
            result = self.scanner.scan(text, 0, final=True, stop_on=self.block_on)
        except Exception as exc:  # a scanner bug must not forward the raw answer silently
            return self._failed(text, exc)
        decisions = self.decisions_for(result.hits)
        if result.stopped is not None:
            return OutputResult("", decisions, blocked=True)
        return OutputResult(text if self.config.logging_only else result.text, decisions)

    def redact_text(self, text: str) -> tuple[str, list[GuardDecision]]:
        result = self.check(text)
        return result.text, result.decisions

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)

    def _failed(self, text: str, exc: Exception) -> OutputResult:
        if self.config.fail_mode == "open":
            return OutputResult(text, [GuardDecision("output", "output.scanner", "allow", "guardrail_error")])
        raise GuardrailUnavailableError("output guardrail unavailable; retry later") from exc


class StreamRedactor:
    """Redacts a stream of text deltas: ``feed(delta) -> text to send now``, ``flush() -> the rest``.

    After a block finding ``blocked`` is set, nothing more is emitted: end the stream with
    ``finish_reason: content_filter``. ``held`` is the text currently held back (``max_held`` its peak);
    ``hold_limit`` bounds it (the longest entity span).
    """

    def __init__(self, guard: OutputGuard) -> None:
        self.guard = guard
        self.hold_limit = guard.scanner.max_len + 1  # longest entity span + its one lookahead character
        self.hits: list[Hit] = []
        self.blocked = False
        self.max_held = 0
        self._buf = ""  # original text not yet decided
        self._ctx = ""  # original text just before _buf (lookbehinds)
        self._open: Compiled | None = None  # absorbing a key's tail / a key block
        self._done = False
        self._passthrough = False  # fail_mode open after a scanner error: the rest goes out unchanged

    @property
    def held(self) -> int:
        return len(self._buf)

    @property
    def decisions(self) -> list[GuardDecision]:
        if self._passthrough:
            return [GuardDecision("output", "output.scanner", "allow", "guardrail_error")]
        return self.guard.decisions_for(self.hits)

    def feed(self, delta: str) -> str:
        if self._passthrough or not self.guard.active:
            return delta
        if self.blocked or self._done or not delta:
            return ""
        try:
            if self.guard.config.logging_only:  # findings only: pass the text through unchanged
                out = self._step(delta, final=False)
                return delta if out is not None else ""
            return self._step(delta, final=False) or ""
        except Exception as exc:
            return self._failed(delta, exc)

    def flush(self) -> str:
        if self.blocked or self._done:
            return ""
        self._done = True
        if not self.guard.active:
            return ""
        try:
            out = self._step("", final=True) or ""
        except Exception as exc:
            return self._failed("", exc)
        return "" if self.guard.config.logging_only else out

    def _step(self, delta: str, final: bool) -> str | None:
        if self._open is not None:
            delta = self._absorb(delta, final)
            if self._open is not None:
                return ""
        text = self._ctx + self._buf + delta
        start = len(self._ctx)
        result = self.guard.scanner.scan(text, start, final=final, stop_on=self.guard.block_on)
        self.hits.extend(result.hits)
        if result.stopped is not None:
            self.blocked = True
            self._buf = ""
            return result.text
        if result.open_entity is not None:
            self._open = result.open_entity
            self._buf = text[-result.open_entity.max_len:] if result.open_entity.until is not None else ""
            self._ctx = text[-CONTEXT_CHARS:]
            return result.text
        self._ctx = text[max(0, result.consumed - CONTEXT_CHARS):result.consumed]
        self._buf = text[result.consumed:]
        self.max_held = max(self.max_held, len(self._buf))
        return result.text

    def _absorb(self, delta: str, final: bool) -> str:
        """Swallow the open entity's continuation; returns the text after it ("" while still open)."""
        c = self._open
        assert c is not None
        if c.tail is not None:
            m = c.tail.match(delta)
            k = m.end() if m else 0
            self._ctx = (self._ctx + delta[:k])[-CONTEXT_CHARS:]
            if k == len(delta) and not final:
                return ""
            self._open = None
            return delta[k:]
        hay = self._buf + delta  # _buf: the last chars of the block, an END line may straddle chunks
        u = c.until.search(hay) if c.until is not None else None
        if u is None:
            self._buf = "" if final else hay[-c.max_len:]
            if final:
                self._open = None
            return ""
        self._open = None
        self._ctx = hay[max(0, u.end() - CONTEXT_CHARS):u.end()]
        self._buf = ""
        return hay[u.end():]

    def _failed(self, delta: str, exc: Exception) -> str:
        if self.guard.config.fail_mode == "open":
            self._passthrough = True
            self.hits.clear()
            held, self._buf = self._buf, ""
            return held + delta
        raise GuardrailUnavailableError("output guardrail unavailable; retry later") from exc


@lru_cache(maxsize=1)
def _log_scanner() -> Scanner:
    return Scanner(ENTITIES)


def redact_for_log(text: str | None, ignore: dict[str, list[str]] | None = None) -> str | None:
    """Every PII and secret entity masked, whatever the output actions (request log, logging-only mode)."""
    if not text:
        return text
    scanner = _log_scanner() if not ignore else Scanner(ENTITIES, ignore)
    return scanner.scan(text, 0, final=True).text
