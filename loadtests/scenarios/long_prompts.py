"""Long prompts: ~``LLMGW_LONG_PROMPT_WORDS`` words of context plus a question, small outputs.

Default 500 words: ~1,500 tokens on the tiny models' 2k-vocabulary tokenizer, inside their 2,048-token
context (800 words overflowed it: every request a 400); raise it for real models.
"""

from __future__ import annotations

import os
import random

from locust import task

from loadtests.scenarios.common import GatewayUser, random_question

_FILLER_TEXT = ("The report describes the quarterly results of the company, its markets, the products it sells, "
                "the people it employs and the risks it faces in the coming year.")
FILLER = _FILLER_TEXT.split()


def long_prompt(words: int, rng: random.Random) -> str:
    start = rng.randrange(len(FILLER))
    body = " ".join(FILLER[(start + i) % len(FILLER)] for i in range(words))
    return f"{body}\n\nUsing the text above, answer: {random_question()} (ref {rng.getrandbits(32):x})"


class LongPromptUser(GatewayUser):
    @task
    def ask_long(self) -> None:
        words = int(os.environ.get("LLMGW_LONG_PROMPT_WORDS", "500"))
        self.chat(long_prompt(words, random.Random()), name="chat-long", max_tokens=16)
