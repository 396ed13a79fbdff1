"""Statistics and the figure for loadtests/bench/shadow_gateway.py: paired block bootstrap of percentile
differences, and the latency distributions of the two arms per phase.

Each sample carries the *unit* it was sent in (a short time window that holds both arms, or a pair of
adjacent on/off blocks). The bootstrap resamples whole units, so the two arms of one resample share the
machine's state (noise common to both cancels in the difference, as it does in the point estimate) and
slow stretches of time are not treated as independent requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(slots=True)
class Sample:
    """One request: its arm ("on" shadowed, "off" not), unit, whether it counts, latency and TTFT in ms."""

    arm: str
    unit: int
    keep: bool
    total_ms: float
    ttft_ms: float
    ok: bool = True
    late_ms: float = 0.0  # how late the load generator sent it (its own CPU starvation, not the gateway's)


def quiet(samples: list[Sample], max_late_ms: float) -> list[Sample]:
    """The samples of units where the load generator was never more than ``max_late_ms`` behind schedule:
    stretches where the machine starved this very process (other work on a shared 2-core box) are left
    out whole, both arms alike. The client process runs no shadow, so this criterion does not look at
    the arm."""
    worst: dict[int, float] = {}
    for s in samples:
        worst[s.unit] = max(worst.get(s.unit, 0.0), s.late_ms)
    return [s for s in samples if worst[s.unit] <= max_late_ms]


def _by_unit(samples: list[Sample], arm: str, field: str) -> dict[int, np.ndarray]:
    out: dict[int, list[float]] = {}
    for s in samples:
        if s.keep and s.ok and s.arm == arm:
            out.setdefault(s.unit, []).append(getattr(s, field))
    return {u: np.array(v) for u, v in out.items()}


def paired_diff(samples: list[Sample], q: float, *, field: str = "total_ms", rounds: int = 2000,
                seed: int = 0) -> tuple[float, float, float]:
    """(on − off at percentile ``q``, 95 % CI low, high) in ms, by resampling units with replacement."""
    on, off = _by_unit(samples, "on", field), _by_unit(samples, "off", field)
    units = sorted(set(on) & set(off))
    if not units:
        return float("nan"), float("nan"), float("nan")
    point = float(np.percentile(np.concatenate([on[u] for u in units]), q)
                  - np.percentile(np.concatenate([off[u] for u in units]), q))
    rng = np.random.default_rng(seed)
    diffs = np.empty(rounds)
    for r in range(rounds):
        pick = rng.choice(len(units), len(units))
        a = np.concatenate([on[units[i]] for i in pick])
        b = np.concatenate([off[units[i]] for i in pick])
        diffs[r] = np.percentile(a, q) - np.percentile(b, q)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return point, float(lo), float(hi)


def arm_summary(samples: list[Sample], arm: str) -> dict[str, float]:
    """n, errors, p50 / p95 / p99 / max and TTFT p50 / p99 of one arm (kept samples), ms."""
    kept = [s for s in samples if s.keep and s.arm == arm]
    total = np.array([s.total_ms for s in kept if s.ok])
    ttft = np.array([s.ttft_ms for s in kept if s.ok])
    if total.size == 0:
        return {"n": 0, "errors": len(kept)}
    return {"n": int(total.size), "errors": sum(not s.ok for s in kept),
            "p50_ms": round(float(np.percentile(total, 50)), 2), "p95_ms": round(float(np.percentile(total, 95)), 2),
            "p99_ms": round(float(np.percentile(total, 99)), 2), "max_ms": round(float(total.max()), 1),
            "ttft_p50_ms": round(float(np.percentile(ttft, 50)), 2),
            "ttft_p99_ms": round(float(np.percentile(ttft, 99)), 2)}


def phase_report(samples: list[Sample], rounds: int = 2000) -> dict:
    """Both arms' summaries and the added p50 / p99 (on − off) with their 95 % paired-bootstrap intervals."""
    out: dict = {"off": arm_summary(samples, "off"), "on": arm_summary(samples, "on"),
                 "units": len({s.unit for s in samples})}
    for q in (50, 99):
        point, lo, hi = paired_diff(samples, q, rounds=rounds)
        out[f"added_p{q}_ms"] = {"point": round(point, 2), "ci95": [round(lo, 2), round(hi, 2)]}
    return out


def plot(phases: dict[str, list[Sample]], reports: dict[str, dict], path: Path, title: str) -> None:
    """One panel per phase: the empirical CDF of both arms' latencies (log x), tail on a log scale, p99 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(phases))
    rows = -(-len(phases) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.flat[len(phases):]:
        ax.set_visible(False)
    for ax, (name, samples) in zip(axes.flat, phases.items(), strict=False):
        rep = reports[name]
        for arm, colour, label in (("off", "tab:blue", "no shadow"), ("on", "tab:orange", "shadowed")):
            lat = np.sort([s.total_ms for s in samples if s.keep and s.ok and s.arm == arm])
            if lat.size == 0:
                continue
            tail = 1.0 - np.arange(lat.size) / lat.size  # share of requests at least this slow
            ax.step(lat, tail, where="post", color=colour, label=f"{label} (n={lat.size})")
            ax.axvline(np.percentile(lat, 99), color=colour, ls="--", lw=0.8)
        p99 = rep["added_p99_ms"]
        p50 = rep["added_p50_ms"]
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1 / max(1, len(samples)), 1.05)
        ax.axhline(0.01, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("client latency to [DONE], ms (log)")
        ax.set_ylabel("share of requests at least this slow (log)")
        ax.set_title(f"{name}\nadded p50 {p50['point']:+.2f} ms [{p50['ci95'][0]:+.2f}, {p50['ci95'][1]:+.2f}], "
                     f"p99 {p99['point']:+.2f} ms [{p99['ci95'][0]:+.2f}, {p99['ci95'][1]:+.2f}]", fontsize=9)
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(True, which="both", alpha=0.25)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
