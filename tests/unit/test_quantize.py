"""quantize/: calibration loading, AWQ W4A16 end to end on the tiny model, clear errors on bad input.

The library stage needs llm-compressor, which lives in its own venv (its transformers /
compressed-tensors pins conflict with the gateway's; docs/quantize.md). The end-to-end test skips
with that reason when neither this interpreter nor .cache/venv-quantize has it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantize.awq import (
    QUANTIZE_VENV,
    REPORT_NAME,
    QuantizeError,
    choose_group_size,
    library_available,
    linear_in_features,
    run_quantization,
)
from quantize.calibration import DEFAULT_CALIBRATION, CalibrationError, load_calibration

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / ".cache" / "models" / "tiny-small"
HAVE_LIBRARY = library_available() or (QUANTIZE_VENV / "bin" / "python").exists()


def test_default_calibration_set_is_64_varied_prompts() -> None:
    texts = load_calibration()
    assert len(texts) == 64 == len(set(texts))
    assert all(len(t) > 20 for t in texts)
    assert json.loads(DEFAULT_CALIBRATION.read_text())["texts"][0] == texts[0]
    assert load_calibration(samples=5) == texts[:5]


def test_calibration_formats(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(
        '{"text": "plain text"}\n\n"a bare string"\n{"prompt": "  a prompt  "}\n'
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    )
    assert load_calibration(jsonl) == ["plain text", "a bare string", "a prompt", "user: hi\nassistant: hello"]
    txt = tmp_path / "c.txt"
    txt.write_text("first line\n\n   \nsecond line\n")
    assert load_calibration(txt) == ["first line", "second line"]
    assert load_calibration(txt, samples=1) == ["first line"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "\n  \n", "no samples"),
        ("empty.jsonl", "", "no samples"),
        ("bad.jsonl", "{not json\n", "invalid JSON"),
        ("wrong.jsonl", '{"foo": 1}\n', "expected a string"),
    ],
)
def test_bad_calibration_files_give_clear_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CalibrationError, match=message):
        load_calibration(path)


def test_missing_calibration_file_and_bad_samples(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="not found"):
        load_calibration(tmp_path / "nope.jsonl")
    with pytest.raises(CalibrationError, match="samples"):
        load_calibration(samples=0)


def test_group_size_falls_back_to_a_divisor() -> None:
    assert choose_group_size(128, [128, 256]) == (128, None)
    size, note = choose_group_size(128, [96, 192])
    assert size == 32 and "used 32" in note
    with pytest.raises(QuantizeError):
        choose_group_size(128, [100])
    assert linear_in_features(TINY) == [128, 256]


def test_bad_source_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="not found"):
        run_quantization(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuantizeError, match=r"config\.json"):
        run_quantization(tmp_path / "empty", tmp_path / "out")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CalibrationError, match="no samples"):
        run_quantization(TINY, tmp_path / "out", calibration=empty)
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_input_without_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    result = CliRunner().invoke(cli, ["quantize", str(tmp_path / "missing"), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "source checkpoint folder not found" in result.output


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> tuple[Path, dict]:
    if not HAVE_LIBRARY:
        pytest.skip(
            "llm-compressor not installed: it pins transformers<=5.17 / compressed-tensors==0.19 against the "
            "gateway's pins, so it lives in .cache/venv-quantize (docs/quantize.md shows the two install commands)"
        )
    out = tmp_path_factory.mktemp("q") / "tiny-small-awq"
    report = run_quantization(TINY, out, samples=8, max_seq_len=64, group_size=128)
    return out, report


def test_awq_end_to_end_packs_4bit_weights(quantized) -> None:
    from safetensors import safe_open

    out, report = quantized
    assert json.loads((out / REPORT_NAME).read_text()) == report
    assert report["group_size"] == 128 and report["calibration_samples"] == 8
    assert report["libraries"]["llmcompressor"] == "0.14.0.1"
    assert (out / "tokenizer.json").is_file()
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "pack-quantized"
    weights = cfg["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["strategy"]) == (4, 128, "group")

    with safe_open(out / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        packed = f.get_tensor("model.layers.0.mlp.down_proj.weight_packed")
        scale = f.get_tensor("model.layers.0.mlp.down_proj.weight_scale")
    assert "model.layers.0.mlp.down_proj.weight" not in keys
    # down_proj: 128 out x 256 in; eight 4-bit values per int32, one scale per 128-wide group
    assert str(packed.dtype) == "torch.int32" and tuple(packed.shape) == (128, 256 // 8)
    assert tuple(scale.shape) == (128, 256 // 128)
    # tied embedding (bf16) dominates this tiny model; the Linear layers shrink ~4x
    assert report["weight_bytes_after"] < 0.7 * report["weight_bytes_before"]


def test_quantized_checkpoint_generates_and_stays_close(quantized) -> None:
    from quantize.verify import compare_logits, generate_transformers

    out, _ = quantized
    gen = generate_transformers(out, "Hello world", max_new_tokens=6)
    assert len(gen["token_ids"]) == 6
    stats = compare_logits(TINY, out, load_calibration(samples=4), max_len=64)
    assert stats["top1_agreement"] >= 0.9
    assert stats["relative_logit_delta"] < 0.35
    assert stats["mean_kl_divergence"] < 0.01
    assert abs(stats["perplexity_delta_pct"]) < 5
    assert stats["mean_abs_logit_delta"] > 0  # really quantized, not a copy
