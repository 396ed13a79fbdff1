"""Build a tiny, real Llama-architecture checkpoint with a locally trained BPE tokenizer.

The weights are random (seeded), so the text it generates is meaningless; everything around it
(config, safetensors weights, tokenizer, chat template) is what vLLM and transformers load from a
real model folder. Deterministic: the same size always gives the same files.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

SIZES: dict[str, dict[str, int]] = {
    # vLLM's CPU attention needs head_dim >= 32.
    "small": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4},
    "large": {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8},
}
VOCAB_SIZE = 2048
MAX_POSITIONS = 2048
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
_WORDS = [
    "the", "a", "an", "of", "to", "and", "in", "is", "it", "that", "for", "on", "with", "as", "was", "by",
    "at", "be", "this", "from", "or", "have", "not", "are", "but", "what", "all", "were", "when", "we",
    "there", "can", "your", "which", "their", "said", "if", "do", "will", "each", "about", "how", "up", "out",
    "them", "then", "she", "many", "some", "so", "these", "would", "other", "into", "has", "more", "her",
    "two", "like", "him", "see", "time", "could", "no", "make", "than", "first", "been", "its", "who", "now",
    "people", "my", "made", "over", "did", "down", "only", "way", "find", "use", "may", "water", "long",
    "little", "very", "after", "words", "called", "just", "where", "most", "know", "get", "through", "back",
    "much", "before", "go", "good", "new", "write", "our", "used", "me", "man", "too", "any", "day", "same",
    "right", "look", "think", "also", "around", "another", "came", "come", "work", "three", "word", "must",
    "because", "does", "part", "even", "place", "well", "such", "here", "take", "why", "help", "put",
    "different", "away", "again", "off", "went", "old", "number", "great", "tell", "men", "say", "small",
    "every", "found", "still", "between", "name", "should", "home", "big", "give", "air", "line", "set",
    "own", "under", "read", "last", "never", "us", "left", "end", "along", "while", "might", "next", "sound",
    "below", "saw", "something", "thought", "both", "few", "those", "always", "show", "large", "often",
    "together", "asked", "house", "world", "going", "want", "school", "important", "until", "form", "food",
    "keep", "children", "feet", "land", "side", "without", "boy", "once", "animal", "life", "enough", "took",
    "sometimes", "four", "head", "above", "kind", "began", "almost", "live", "page", "got", "earth", "need",
    "far", "hand", "high", "year", "mother", "light", "country", "father", "model", "request", "token",
    "cache", "route", "gateway", "server", "latency", "stream", "answer", "question", "explain", "compute",
    "price", "data", "python", "code", "function", "error", "value", "list", "table", "query", "user",
    "system", "assistant", "reply", "please", "thanks", "hello", "world",
]


@dataclass(frozen=True)
class TinyModelSpec:
    size: str
    seed: int = 0


def _corpus(seed: int, lines: int = 4000) -> list[str]:
    """A deterministic synthetic English-like corpus (word list + digits + punctuation)."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        n = rng.randint(4, 18)
        words = [rng.choice(_WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words.insert(rng.randrange(n), str(rng.randint(0, 10_000)))
        sentence = " ".join(words)
        out.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "?", "!", ":", ","]))
    return out


def build_tokenizer(seed: int = 0):
    """Train a byte-level BPE tokenizer locally and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL_TOKENS[4:],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = MAX_POSITIONS
    return fast


def build_tiny_model(out_dir: str | Path, size: str = "small", seed: int = 0, force: bool = False) -> Path:
    """Build (or reuse) the tiny checkpoint in ``out_dir``; returns the folder."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    out = Path(out_dir)
    marker = out / "llmgw_tiny_model.json"
    if marker.exists() and not force:
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(seed)
    dims = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
        **dims,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    marker.write_text(json.dumps({"size": size, "seed": seed, "vocab_size": len(tokenizer), **dims}, indent=2))
    return out
