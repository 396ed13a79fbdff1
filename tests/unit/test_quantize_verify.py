"""Verification of a quantized checkpoint one layer at a time, in the checkpoint's dtype (issue 14 #10)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from quantize.calibration import load_calibration
from tests.unit.test_quantize import TINY, quantized  # noqa: F401 (module fixture: builds the AWQ checkpoint)


def test_streamed_logits_equal_the_whole_model_comparison(quantized) -> None:  # noqa: F811
    from quantize.verify import compare_logits
    from quantize.verify_stream import streamed_logits

    out, _ = quantized
    texts = load_calibration(samples=3)
    whole = compare_logits(TINY, out, texts, max_len=48)
    streamed = streamed_logits(TINY, out, texts, max_len=48)
    assert whole["dtype"] == streamed["dtype"] == "bfloat16"  # the checkpoint's dtype, not float32
    for key in ("top1_agreement", "mean_kl_divergence", "relative_logit_delta", "perplexity_delta_pct"):
        assert streamed[key] == pytest.approx(whole[key], rel=1e-3, abs=1e-6), key
    assert streamed["mean_abs_logit_delta"] > 0


def test_weight_check_measures_int4_error_and_finds_a_broken_layer(quantized, tmp_path: Path) -> None:  # noqa: F811
    import torch
    from safetensors.torch import load_file, save_file

    from quantize.verify_stream import streamed_logits
    from quantize.verify_weights import compare_weights

    out, _ = quantized
    clean = compare_weights(TINY, out)
    assert clean["layers_checked"] == clean["layers_quantized"] == 14 and clean["quantization_levels_ok"]
    # 4-bit min-max over groups of 128 Gaussian-like weights: RMS error ~ (range / 15) / sqrt(12) ~ 0.1 of RMS
    assert 0.05 < clean["relative_error_mean"] < 0.15 and clean["relative_error_max"] < 0.2
    assert compare_weights(TINY, out, max_layers=3)["layers_checked"] == 3

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    tensors = load_file(broken / "model.safetensors")
    name = "model.layers.1.self_attn.o_proj.weight_packed"
    tensors[name] = torch.flip(tensors[name], dims=[0])  # rows of int4 codes in the wrong order
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    bad = compare_weights(TINY, broken)
    assert bad["worst_layer"] == "model.layers.1.self_attn.o_proj" and bad["relative_error_max"] > 0.5
    texts = load_calibration(samples=2)
    assert (streamed_logits(TINY, broken, texts, max_len=32)["mean_kl_divergence"]
            > 2 * streamed_logits(TINY, out, texts, max_len=32)["mean_kl_divergence"])
