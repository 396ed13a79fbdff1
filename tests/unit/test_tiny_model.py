"""The tiny model builder is deterministic and produces a loadable checkpoint with a chat template."""

import hashlib
from pathlib import Path

from app.tiny_model import SIZES, build_tokenizer


def test_tokenizer_is_deterministic_and_byte_complete() -> None:
    a, b = build_tokenizer(0), build_tokenizer(0)
    text = "Hello wörld 😀 123"
    assert a.encode(text) == b.encode(text)
    assert a.decode(a.encode(text), skip_special_tokens=True) == text  # byte-level: nothing is <unk>
    chat = a.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert chat.endswith("<|assistant|>\n") and "<|user|>\nhi<|end|>" in chat


def test_built_checkpoints_load_with_transformers(tmp_path: Path) -> None:
    from transformers import AutoConfig

    from app.tiny_model import build_tiny_model

    first = build_tiny_model(tmp_path / "a", "small")
    second = build_tiny_model(tmp_path / "b", "small")
    digest = [hashlib.sha256((p / "model.safetensors").read_bytes()).hexdigest() for p in (first, second)]
    assert digest[0] == digest[1]
    cfg = AutoConfig.from_pretrained(first)
    assert cfg.hidden_size == SIZES["small"]["hidden_size"]
    assert cfg.hidden_size // cfg.num_attention_heads >= 32  # vLLM CPU attention needs head_dim >= 32
