"""The one place tokens are counted before generation: the target model's own tokenizer and chat template.

The engine reports the exact usage afterwards; this count sizes reservations (rate limits, budgets),
``effective_max_tokens`` and the guardrails' prompt caps. A pool whose tokenizer is not readable from
the ingress (e.g. the model lives only on GPU nodes) falls back to an estimate of ~4 characters per
token, and then context-length checks are left to the engine.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

logger = logging.getLogger(__name__)
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role markers per message when no chat template is known


class TokenCounter:
    def __init__(self, model: str) -> None:
        self.model = model
        self.tokenizer = None
        path = Path(model)
        if path.is_dir() and (path / "tokenizer_config.json").exists():
            try:
                from transformers import AutoTokenizer

                self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            except Exception as exc:  # an unreadable tokenizer: estimate instead
                logger.warning("tokenizer of %s not loadable (%s): estimating tokens", model, type(exc).__name__)
        else:
            logger.info("no local tokenizer for %s: estimating tokens (~%d chars each)", model, CHARS_PER_TOKEN)

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    def count_chat(self, messages: list[dict], tools: list[dict] | None = None) -> int:
        """Tokens of the prompt the pool will build (app.engines.chat_prompt.render_chat: same template, same
        tool convention). A template that refuses the messages raises ChatTemplateError (400) here, before any
        pool is tried; any other failure falls back to the estimate."""
        from app.engines.chat_prompt import render_chat
        from app.errors import ChatTemplateError

        tok = self.tokenizer
        if tok is not None and getattr(tok, "chat_template", None):
            try:
                text = render_chat(tok, messages, tools)
                return len(tok.encode(text, add_special_tokens=False))
            except ChatTemplateError:
                raise
            except Exception as exc:  # e.g. a broken template: the pool will fail too, estimate here
                logger.warning("chat template of %s failed (%s): estimating tokens", self.model, type(exc).__name__)
        return sum(self.count_text(str(m.get("content") or "")) + MESSAGE_OVERHEAD for m in messages)

    def count_text(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text))
        return max(1, len(text) // CHARS_PER_TOKEN) if text else 0


class TokenCounters:
    """One lazily loaded counter per model directory (thread-safe: the first load may race)."""

    def __init__(self) -> None:
        self._by_model: dict[str, TokenCounter] = {}
        self._lock = threading.Lock()

    def get(self, model: str) -> TokenCounter:
        counter = self._by_model.get(model)
        if counter is None:
            with self._lock:
                counter = self._by_model.get(model) or TokenCounter(model)
                self._by_model[model] = counter
        return counter
