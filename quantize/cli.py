"""`llmgw quantize SRC_DIR OUT_DIR`: AWQ W4A16 quantization + verification (docs/quantize.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def quantize(
    src_dir: Path = typer.Argument(..., help="Local Hugging Face checkpoint folder (config.json + safetensors)."),
    out_dir: Path = typer.Argument(..., help="Folder to write the quantized checkpoint (+ tokenizer, report) to."),
    calibration: Path | None = typer.Option(
        None, help="Calibration file (.jsonl / .txt / .json); default: quantize/artifacts/calibration.json."
    ),
    samples: int = typer.Option(64, help="Calibration samples to use (at most)."),
    max_seq_len: int = typer.Option(512, help="Tokens per calibration sample (truncation)."),
    group_size: int = typer.Option(128, help="Quantization group size (smaller one used if it does not divide)."),
    verify: bool = typer.Option(True, help="Load the result, generate, compare logits with the original."),
    vllm: bool = typer.Option(False, help="Also generate with vLLM (CPU: CPUWNA16 kernel; ~30 s)."),
    verify_layers: int = typer.Option(0, help="Weight check on this many evenly spread layers (0: all)."),
) -> None:
    """AWQ 4-bit weight-only quantization (W4A16) with llm-compressor -> compressed-tensors checkpoint for vLLM."""
    from quantize.awq import REPORT_NAME, QuantizeError, run_quantization
    from quantize.calibration import CalibrationError, load_calibration

    try:
        report = run_quantization(src_dir, out_dir, calibration, samples, max_seq_len, group_size)
    except (QuantizeError, CalibrationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if report["group_size_note"]:
        typer.echo(f"note: {report['group_size_note']}")
    if verify:
        from quantize.verify import generate_transformers, generate_vllm, whole_model_fits
        from quantize.verify_stream import streamed_logits
        from quantize.verify_weights import compare_weights

        texts = load_calibration(calibration, samples)[:8]
        report["verify"] = {  # both comparisons hold one layer at a time, in the checkpoint's dtype
            "weights_vs_original": compare_weights(src_dir, out_dir, max_layers=verify_layers or None),
            "logits_vs_original": streamed_logits(src_dir, out_dir, texts, max_len=max_seq_len),
            "generate": [generate_transformers(out_dir) if whole_model_fits(src_dir) else
                         {"engine": "transformers", "skipped": "the whole model does not fit in memory here; "
                                                               "use --vllm on the serving GPU box"}],
        }
        if vllm:
            report["verify"]["generate"].append(generate_vllm(out_dir))
        (Path(out_dir) / REPORT_NAME).write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2))
