"""Layer-by-layer check of a compressed-tensors ``pack-quantized`` checkpoint against its original.

Never holds a whole model: for each quantized Linear it reads the original weight and the packed int4
weight + scales + zero points from the safetensors files (sharded or not), dequantizes with
compressed-tensors (the code vLLM's loader shares), and measures the error in float32 on that one
layer, then drops it. Peak memory is one layer's weights in float32 a few times over (~6 GB for a 70B's
largest matrix, 28672 x 8192), so a 70B checkpoint is checked on any machine that can read it;
``max_layers`` checks an evenly spread sample instead of every layer. The end-to-end check (logits of
both checkpoints, also one layer at a time) is ``quantize.verify_stream``.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

PACKED = ".weight_packed"


class TensorFiles:
    """Tensor name -> its safetensors file (``model.safetensors.index.json`` or every ``*.safetensors``)."""

    def __init__(self, folder: str | Path) -> None:
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.where = {name: self.folder / file for name, file in weight_map.items()}
        else:
            self.where = {}
            for file in sorted(self.folder.glob("*.safetensors")):
                with safe_open(file, "pt") as f:
                    self.where.update(dict.fromkeys(f.keys(), file))
        if not self.where:
            raise FileNotFoundError(f"no safetensors weights in {self.folder}")
        self._open: dict[Path, Any] = {}

    def get(self, name: str):
        from safetensors import safe_open

        file = self.where[name]
        if file not in self._open:
            self._open[file] = safe_open(file, "pt")
        return self._open[file].get_tensor(name)

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def bytes(self) -> int:
        return sum(p.stat().st_size for p in set(self.where.values()))


def _schemes(quantized: Path) -> list[tuple[list[str], Any]]:
    from compressed_tensors.quantization import QuantizationScheme

    cfg = json.loads((quantized / "config.json").read_text())["quantization_config"]
    out = []
    for group in cfg["config_groups"].values():
        fields = {k: group[k] for k in ("targets", "weights", "input_activations", "output_activations")
                  if k in group}
        out.append((group.get("targets", []), QuantizationScheme.model_validate(fields)))
    return out


def _scheme_for(module: str, schemes: list[tuple[list[str], Any]]):
    for targets, scheme in schemes:
        if any(t.startswith("re:") and re.match(t[3:], module) for t in targets):
            return scheme
    return schemes[0][1]  # "Linear": every packed module


def spread(items: list[str], n: int | None) -> list[str]:
    """``n`` items evenly spread over ``items`` (all of them when ``n`` is None or too large)."""
    if n is None or n <= 0 or n >= len(items):
        return items
    step = (len(items) - 1) / max(n - 1, 1)
    return [items[round(i * step)] for i in range(n)]


def rescaled_error(ref, deq, iterations: int = 4) -> tuple[float, float]:
    """||deq - diag(r) ref diag(c)|| / ||diag(r) ref diag(c)|| with the row / column scales r, c fitted by
    alternating least squares: AWQ multiplies a layer's input columns by s (and divides the layer before by
    s: a norm's weight or the previous projection's rows), so only the error left after such diagonal
    rescaling is quantization error. Also the largest absolute difference after the fit. float32, one layer."""
    import torch

    w, d = ref.float(), deq.float()
    r, c = torch.ones(w.shape[0]), torch.ones(w.shape[1])
    for _ in range(iterations):
        wc = w * c
        r = (d * wc).sum(1) / (wc * wc).sum(1).clamp_min(1e-30)
        rw = w * r[:, None]
        c = (d * rw).sum(0) / (rw * rw).sum(0).clamp_min(1e-30)
    fit = w * r[:, None] * c
    diff = d - fit
    den = float((fit * fit).sum())
    return (float((diff * diff).sum()) / den) ** 0.5 if den else 0.0, float(diff.abs().max())


def compare_weights(original: str | Path, quantized: str | Path, max_layers: int | None = None) -> dict:
    """Quantization error per quantized layer (``rescaled_error``), aggregated per layer kind, plus a check
    that each group holds at most 2**bits distinct values."""
    import torch
    from compressed_tensors.compressors import PackedQuantizationCompressor

    t0 = time.perf_counter()
    orig, quant = TensorFiles(original), TensorFiles(quantized)
    schemes = _schemes(Path(quantized))
    modules = sorted(n[: -len(PACKED)] for n in quant.where if n.endswith(PACKED))
    chosen = spread(modules, max_layers)
    errors: dict[str, float] = {}
    max_abs, peak, dtype, levels_ok = 0.0, 0, "", True
    for module in chosen:
        state = {k: quant.get(f"{module}.{k}") for k in ("weight_packed", "weight_scale", "weight_zero_point",
                                                           "weight_g_idx") if f"{module}.{k}" in quant}
        state["weight_shape"] = torch.Size(quant.get(f"{module}.weight_shape").tolist())
        scheme = _scheme_for(module, schemes)
        deq = PackedQuantizationCompressor.decompress(state, scheme)["weight"]
        ref = orig.get(f"{module}.weight")
        if ref.shape != deq.shape:
            raise ValueError(f"{module}: shape {tuple(deq.shape)} in the quantized checkpoint, "
                             f"{tuple(ref.shape)} in the original")
        dtype = str(ref.dtype).removeprefix("torch.")
        peak = max(peak, ref.numel() * (ref.element_size() + deq.element_size() + 4 * 6))  # + f32 work
        err, worst_abs = rescaled_error(ref, deq)
        errors[module], max_abs = err, max(max_abs, worst_abs)
        group = scheme.weights.group_size or deq.shape[1]
        if deq.shape[1] % group == 0 and levels_ok:  # at most 2**bits distinct values per group (first row)
            first = deq[0].reshape(-1, group)
            levels_ok = all(len(torch.unique(g)) <= 2**scheme.weights.num_bits for g in first)
        del state, deq, ref
    by_kind: dict[str, list[float]] = defaultdict(list)
    for module, err in errors.items():
        by_kind[module.rsplit(".", 1)[-1]].append(err)
    worst = max(errors, key=errors.get) if errors else None
    return {
        "layers_checked": len(chosen), "layers_quantized": len(modules), "dtype": dtype,
        "relative_error_mean": sum(errors.values()) / len(errors) if errors else 0.0,
        "relative_error_max": errors[worst] if worst else 0.0, "worst_layer": worst,
        "max_abs_error": max_abs, "quantization_levels_ok": levels_ok,
        "relative_error_by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
        "peak_layer_bytes": peak, "seconds": round(time.perf_counter() - t0, 2),
    }
