"""Logits of a quantized checkpoint vs its original, one decoder layer at a time, in the checkpoint's dtype.

The model is built on the ``meta`` device (no memory); for each decoder layer the original's weights
and the quantized checkpoint's (pack-quantized Linears dequantized with compressed-tensors) are read
from safetensors, the layer runs once per checkpoint on that checkpoint's own hidden states, and is
emptied again. Memory: one decoder layer + the embedding and head (~5 GB for a Llama-70B in bf16) plus
the texts' hidden states, instead of two whole models (~280 GB in bf16, ~560 GB in float32). It needs the
usual decoder-only layout (``model.embed_tokens``, ``model.layers``, ``model.norm``, ``lm_head``,
``model.rotary_emb``: Llama, Mistral, Qwen2/3, ...). Same statistics as ``verify.compare_logits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantize.verify_weights import PACKED, TensorFiles, _scheme_for, _schemes


class _Weights:
    """One checkpoint's tensors by name; pack-quantized Linears come back dequantized."""

    def __init__(self, folder: str | Path, quantized: bool) -> None:
        self.files = TensorFiles(folder)
        self.schemes = _schemes(Path(folder)) if quantized else []

    def get(self, name: str):
        import torch

        if name in self.files:
            return self.files.get(name)
        module = name.removesuffix(".weight")
        if self.schemes and f"{module}{PACKED}" in self.files:
            from compressed_tensors.compressors import PackedQuantizationCompressor

            state = {k: self.files.get(f"{module}.{k}") for k in ("weight_packed", "weight_scale",
                                                                  "weight_zero_point", "weight_g_idx")
                     if f"{module}.{k}" in self.files}
            state["weight_shape"] = torch.Size(self.files.get(f"{module}.weight_shape").tolist())
            return PackedQuantizationCompressor.decompress(state, _scheme_for(module, self.schemes))["weight"]
        raise KeyError(name)


def _fill(module: Any, prefix: str, weights: _Weights, aliases: dict[str, str]) -> None:
    """Materialize ``module`` (built on meta, in the checkpoint's dtype) with this checkpoint's tensors."""
    import torch

    module.to_empty(device="cpu")
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            full = f"{prefix}{name}"
            try:
                value = weights.get(full)
            except KeyError:
                value = weights.get(aliases[full])  # tied embeddings: lm_head.weight -> embed_tokens.weight
            tensor.copy_(value.to(tensor.dtype if tensor.is_floating_point() else value.dtype))


def _empty(module: Any) -> None:
    module.to("meta")


def streamed_logits(original: str | Path, quantized: str | Path, texts: list[str], max_len: int = 128) -> dict:
    """``verify.compare_logits``' statistics, computed one decoder layer at a time (see module doc)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.masking_utils import create_causal_mask

    from quantize.verify import logit_stats

    config = AutoConfig.from_pretrained(original)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    with torch.device("meta"):
        skel = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    skel.eval()
    body = skel.model
    aliases = {"lm_head.weight": "model.embed_tokens.weight"} if getattr(config, "tie_word_embeddings", False) else {}
    tok = AutoTokenizer.from_pretrained(original)
    ids = [tok(t, return_tensors="pt", truncation=True, max_length=max_len)["input_ids"] for t in texts]
    sources = {"original": _Weights(original, quantized=False), "quantized": _Weights(quantized, quantized=True)}
    rotary = type(body.rotary_emb)(config=config)
    with torch.no_grad():
        hidden: dict[str, list] = {}
        for key, weights in sources.items():
            _fill(body.embed_tokens, "model.embed_tokens.", weights, aliases)
            hidden[key] = [body.embed_tokens(x) for x in ids]
            _empty(body.embed_tokens)
        extras = []
        for x, h in zip(ids, hidden["original"], strict=True):
            pos = torch.arange(x.shape[1])[None]
            mask = create_causal_mask(config=config, inputs_embeds=h, attention_mask=None, past_key_values=None,
                                      position_ids=pos)
            extras.append({"position_ids": pos, "attention_mask": mask, "position_embeddings": rotary(h, pos)})
        for i, layer in enumerate(body.layers):
            for key, weights in sources.items():
                _fill(layer, f"model.layers.{i}.", weights, aliases)
                outs = [layer(h, **kw) for h, kw in zip(hidden[key], extras, strict=True)]
                hidden[key] = [o[0] if isinstance(o, tuple) else o for o in outs]
                _empty(layer)
        logits: dict[str, list] = {}
        for key, weights in sources.items():
            _fill(body.norm, "model.norm.", weights, aliases)
            _fill(skel.lm_head, "lm_head.", weights, aliases)
            logits[key] = [skel.lm_head(body.norm(h))[0].float() for h in hidden[key]]
            _empty(body.norm)
            _empty(skel.lm_head)
    stats = logit_stats(list(zip(logits["original"], logits["quantized"], [x[0] for x in ids], strict=True)))
    return {**stats, "dtype": str(dtype).removeprefix("torch."), "mode": "layer by layer"}
