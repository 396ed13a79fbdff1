"""Enforcement: request and token rate limits, budget reservations and their settlement.

``precheck`` (the admit stage) refuses locally what surely exceeds a requests-per-minute limit
(:mod:`app.policy.rpm_gate`); ``reserve`` charges the rpm subjects (key, tenant), the
tokens-per-minute subjects (prompt + max_tokens) and the worst-case spend (at the highest-priced
candidate) on the key's and tenant's day and month windows, all or nothing (Redis: one script, one
round trip); ``settle`` books the actual usage, refunds the rest and raises budget alerts (one more
round trip). ``admit`` charges requests on its own (a request that ended before ``reserve``).
Redis failures follow ``policy.fail_mode`` (never a 500).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.errors import InsufficientQuotaError, PermissionDeniedError, RateLimitError
from app.observability import metrics
from app.policy.ledger import (
    Alert,
    BudgetSubject,
    Ledger,
    MemoryLedger,
    Reservation,
    Usage,
    to_nusd,
)
from app.policy.periods import Calendar, Period
from app.policy.prices import PriceTable
from app.policy.ratelimit import (
    Admission,
    MemoryRateLimiter,
    RateLimiter,
    Subject,
    go_duration,
    ratelimit_headers,
    retry_after_headers,
)
from app.policy.rpm_gate import PendingRequests, RequestsGate
from app.policy.store_guard import FailOpenLog, StoreUnavailable, guarded, unavailable

if TYPE_CHECKING:
    from app.policy.service import Identity, PolicyService

logger = logging.getLogger("llmgw.policy")
NO_RETRY = {"x-should-retry": "false"}
DAY_TTL_S, MONTH_TTL_S = 40 * 86_400, 400 * 86_400


@dataclass
class Hold:
    """What ``reserve`` took, given back to ``settle`` exactly once."""

    tokens: list[Subject] = field(default_factory=list)  # tpm subjects charged (cost = reserved tokens)
    reservation: Reservation | None = None
    reserved_tokens: int = 0
    worst_model: str = ""


def _rate_error(kind: str, s: Subject, retry_ms: float, headers: dict[str, str]) -> RateLimitError:
    owner = s.key.split(":", 1)[0]
    unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    err = RateLimitError(f"Rate limit reached for {unit} on this {owner}: limit {s.limit}. "
                         f"Please try again in {go_duration(retry_ms)}.",
                         headers={**headers, **retry_after_headers(retry_ms)})
    err.error_type = kind
    return err


class Enforcer:
    def __init__(self, service: PolicyService, prices: PriceTable | None = None,
                 alert_sink: Callable[[Alert, Identity], Any] | None = None) -> None:
        cfg = service.cfg
        self.service, self.cfg = service, cfg
        self.calendar = Calendar(cfg.timezone)
        self.prices = prices
        self.alert_sink = alert_sink  # e.g. the webhook sender (set by the owner; optional)
        self.fail_log = FailOpenLog()
        clock = service.clock
        if service.redis is not None:
            from app.policy.ledger_redis import RedisLedger
            from app.policy.ratelimit import RedisRateLimiter
            from app.policy.redis_combined import RedisCombined

            store_clock = None if clock is time.time else clock  # None: Redis's own clock
            self.limiter: RateLimiter = RedisRateLimiter(service.redis, cfg.key_prefix, store_clock)
            self.ledger: Ledger = RedisLedger(service.redis, cfg.key_prefix, clock)
            self.combined: RedisCombined | None = RedisCombined(service.redis, cfg.key_prefix, store_clock)
        else:
            self.limiter, self.ledger = MemoryRateLimiter(clock), MemoryLedger(clock)
            self.combined = None
        self.gate = RequestsGate()
        self._periods: tuple[float, float, Period, Period] | None = None
        self._warned_unpriced: set[str] = set()

    async def _io(self, call):
        return await guarded(call)  # deadline: the client's socket timeouts (policy.redis_timeout_s)

    def _fail(self, limit: str) -> None:
        """Redis is away: raise 503 for a fail-closed limit, else note it and carry on."""
        mode = getattr(self.cfg.fail_mode, limit)
        self.fail_log.note(limit, mode, "unreachable")
        if mode == "closed":
            raise unavailable(limit)

    # ---- requests per minute -------------------------------------------------------------
    @staticmethod
    def _subjects(who: Identity, kind: str, cost: int) -> list[Subject]:
        field_name = "rpm" if kind == "requests" else "tpm"
        out = []
        if who.key is not None and (limit := getattr(who.key, field_name)):
            out.append(Subject(f"key:{who.key.id}:{field_name}", kind, limit, cost))
        if limit := getattr(who.tenant_record, field_name):
            out.append(Subject(f"tenant:{who.tenant}:{field_name}", kind, limit, cost))
        return out

    def _now_ms(self) -> float:
        return self.service.clock() * 1000

    def precheck(self, who: Identity) -> PendingRequests:
        """The admit stage: 429 ``requests`` when this replica knows a bucket is empty, else the subjects
        for ``reserve`` to charge (with estimated ``x-ratelimit-*-requests`` headers). No store call."""
        subjects = self._subjects(who, "requests", 1)
        if not subjects:
            return PendingRequests([])
        result = self.gate.check(subjects, self._now_ms())
        headers = ratelimit_headers(result.states)
        if not result.allowed:
            metrics.RATE_LIMITED.labels(who.tenant, "requests").inc()
            raise _rate_error("requests", result.blocked, result.retry_after_ms, headers)
        return PendingRequests(subjects, headers)

    async def admit(self, who: Identity) -> dict[str, str]:
        """Charge one request now (one store call); the ``x-ratelimit-*-requests`` headers, or a 429."""
        subjects = self._subjects(who, "requests", 1)
        if not subjects:
            return {}
        sent = self._now_ms()
        try:
            result = await self._io(self.limiter.acquire(subjects))
        except StoreUnavailable:
            self._fail("requests")
            return {}
        self.gate.learn(sent, result, result.allowed)
        headers = ratelimit_headers(result.states)
        if not result.allowed:
            metrics.RATE_LIMITED.labels(who.tenant, "requests").inc()
            raise _rate_error("requests", result.blocked, result.retry_after_ms, headers)
        return headers

    async def charge_unreserved(self, who: Identity, pending: PendingRequests | None) -> None:
        """A request that ended before ``reserve`` still counts against rpm (best effort, never raises)."""
        if pending is None or pending.charged or not pending.subjects:
            return
        pending.charged = True
        sent = self._now_ms()
        try:
            result = await self._io(self.limiter.acquire(pending.subjects))
        except StoreUnavailable:
            self.fail_log.note("requests", "charge-lost", "unreachable")
            return
        self.gate.learn(sent, result, result.allowed)

    # ---- tokens and budget ---------------------------------------------------------------
    def priced(self, models: list[str]) -> list[str]:
        """The candidates that have a price (fail closed: the others are never used); the first must be."""
        table = self.prices
        priced = [m for m in models if table is not None and table.price(m) is not None]
        for m in models:
            if m not in priced and m not in self._warned_unpriced:
                self._warned_unpriced.add(m)
                logger.warning("model %r has no price: never used (policy.prices / policy.free_models)", m)
        if models and (not priced or priced[0] != models[0]):
            raise PermissionDeniedError(f"The model '{models[0]}' has no price in the gateway's price table; "
                                        "the operator must price it or list it in policy.free_models.",
                                        param="model", code="model_not_priced")
        return priced

    def _day_month(self, now: float) -> tuple[Period, Period]:
        """Today's and this month's periods (recomputed only when the day changes)."""
        cached = self._periods
        if cached is None or not cached[0] <= now < cached[1]:
            day, month = self.calendar.day(now), self.calendar.month(now)
            cached = self._periods = (day.start, day.end, day, month)
        return cached[2], cached[3]

    def budget_subjects(self, who: Identity, now: float) -> list[BudgetSubject]:
        day, month = self._day_month(now)
        owners: list[tuple[str, str, Any]] = []
        if who.key is not None:
            owners.append(("key", f"key:{who.key.id}", who.key))
        owners.append(("tenant", f"tenant:{who.tenant}", who.tenant_record))
        out = []
        for owner, prefix, record in owners:
            for period, label, ttl, attr in (("day", day.label, DAY_TTL_S, "budget_daily_usd"),
                                             ("month", month.label, MONTH_TTL_S, "budget_monthly_usd")):
                usd = getattr(record, attr)
                out.append(BudgetSubject(f"{prefix}:{period}:{label}", None if usd is None else to_nusd(usd),
                                         ttl, owner, period))
        return out

    async def reserve(self, who: Identity, request_id: str, prompt_tokens: int, max_tokens: int,
                      models: list[str], requests: PendingRequests | None = None) -> tuple[Hold, dict[str, str]]:
        """Charge ``requests`` (rpm), reserve tokens (tpm) and the worst-case spend, all or nothing.

        ``models``: the candidates, routed one first. ``requests``: from :meth:`precheck` (marked charged
        once the store decided, admitted or not)."""
        tokens = prompt_tokens + max_tokens
        hold, headers = Hold(reserved_tokens=tokens), {}
        tpm = self._subjects(who, "tokens", tokens)
        for s in tpm:
            if tokens > s.limit:  # could never fit: say so, and tell the SDK not to retry
                metrics.RATE_LIMITED.labels(who.tenant, "tokens").inc()
                owner = s.key.split(":", 1)[0]
                err = RateLimitError(f"Request too large for the tokens per min (TPM) limit of this {owner}: "
                                     f"limit {s.limit}, requested {tokens} ({prompt_tokens} prompt + "
                                     f"{max_tokens} max_tokens). Reduce the prompt or max_tokens.",
                                     code="request_too_large", headers=dict(NO_RETRY))
                err.error_type = "tokens"
                raise err
        table = self.prices
        costs = [(table.cost(m, prompt_tokens, max_tokens) or 0.0, m) for m in models] if table else []
        worst_usd, hold.worst_model = max(costs, default=(0.0, ""))
        amount = to_nusd(worst_usd)
        subjects = self.budget_subjects(who, self.service.clock())
        rpm = requests.subjects if requests is not None and not requests.charged else []
        if requests is not None:
            requests.charged = True
        limited = [*rpm, *tpm]  # one GCRA call for both kinds
        sent = self._now_ms()
        if self.combined is not None:  # Redis: requests, tokens and budget in one atomic round trip
            try:
                result, check = await self._io(self.combined.reserve(limited, request_id, amount, subjects,
                                                                     self.cfg.reservation_hold_s))
            except StoreUnavailable:
                for limit, used in (("requests", rpm), ("tokens", tpm)):
                    if used:
                        self._fail(limit)
                self._fail("budget")
                return hold, headers
            self.gate.learn(sent, result, result.allowed and check.allowed)
            headers = ratelimit_headers(result.states)
            self._raise_rate(who, result, headers)
            self._raise_budget(who, check)
            hold.tokens, hold.reservation = tpm, Reservation(request_id, amount, subjects)
            return hold, headers
        result = await self.limiter.acquire(limited) if limited else Admission(True, [])
        headers = ratelimit_headers(result.states)
        if not result.allowed:
            self.gate.learn(sent, result, False)
            self._raise_rate(who, result, headers)
        hold.tokens = tpm
        check = await self.ledger.reserve(request_id, amount, subjects, self.cfg.reservation_hold_s)
        if not check.allowed:  # all or nothing: give the requests and tokens back
            await self.limiter.adjust([Subject(s.key, s.kind, s.limit, -1) for s in rpm])
            await self.release_tokens(hold)
            self._raise_budget(who, check)
        self.gate.learn(sent, result, True)
        hold.reservation = Reservation(request_id, amount, subjects)
        return hold, headers

    @staticmethod
    def _raise_rate(who: Identity, result: Admission, headers: dict[str, str]) -> None:
        if not result.allowed:
            kind = result.blocked.kind
            metrics.RATE_LIMITED.labels(who.tenant, kind).inc()
            raise _rate_error(kind, result.blocked, result.retry_after_ms, headers)

    def _raise_budget(self, who: Identity, check) -> None:
        if check.allowed:
            return
        b = check.blocked
        metrics.RATE_LIMITED.labels(who.tenant, f"budget_{b.period}").inc()
        raise InsufficientQuotaError(
            f"The {b.period}ly budget of this {b.owner} is used up (${b.limit_nusd / 1e9:.4f}); it renews "
            f"at the start of the next {b.period} ({self.cfg.timezone}).", headers=dict(NO_RETRY))

    async def release_tokens(self, hold: Hold, actual_tokens: int = 0) -> None:
        delta = actual_tokens - hold.reserved_tokens
        if not hold.tokens or delta == 0:
            return
        try:
            await self._io(self.limiter.adjust([Subject(s.key, s.kind, s.limit, delta) for s in hold.tokens]))
        except StoreUnavailable:
            self.fail_log.note("tokens", "refund-lost", "unreachable")
        hold.tokens = []

    async def settle(self, who: Identity, hold: Hold, usage: Usage, tpm_tokens: int | None = None) -> list[Alert]:
        """Book ``usage`` (and refund the rest of the hold); alerts crossed for the first time this period.

        ``tpm_tokens``: what the tokens-per-minute limits keep (default the usage's tokens; 0 for a cache hit).
        """
        kept = usage.prompt_tokens + usage.completion_tokens if tpm_tokens is None else tpm_tokens
        reservation, hold.reservation = hold.reservation, None
        if reservation is None or reservation.settled:
            await self.release_tokens(hold, kept)
            return []
        reservation.settled = True
        thresholds = self.cfg.alerts.thresholds
        try:
            if self.combined is not None:  # Redis: reconcile tokens and book spend in one round trip
                delta = kept - hold.reserved_tokens
                deltas = [Subject(s.key, s.kind, s.limit, delta) for s in hold.tokens]
                hold.tokens = []
                alerts = await self._io(self.combined.settle(deltas, reservation, usage, thresholds))
            else:
                await self.release_tokens(hold, kept)
                alerts = await self.ledger.settle(reservation, usage, thresholds)
        except StoreUnavailable:
            self.fail_log.note("budget", "settle-lost", "unreachable")
            logger.error("policy store unavailable: spend of request %s (%d nano-USD) not booked",
                         reservation.rid, usage.actual_nusd)
            return []
        for alert in alerts:
            self._alert(alert, who)
        return alerts

    def _alert(self, alert: Alert, who: Identity) -> None:
        s = alert.subject
        metrics.BUDGET_ALERTS.labels(who.tenant, s.owner, s.period, f"{alert.threshold:g}").inc()
        logger.warning("budget alert", extra={"event": "budget_alert", "tenant": who.tenant, "owner": s.owner,
                                              "subject": s.key, "period": s.period, "threshold": alert.threshold,
                                              "spent_usd": alert.spent_nusd / 1e9,
                                              "budget_usd": (s.limit_nusd or 0) / 1e9})
        if self.alert_sink is not None:
            try:
                self.alert_sink(alert, who)
            except Exception as exc:  # an alert must never fail the request
                logger.warning("budget alert sink failed: %s", type(exc).__name__)

