"""Cache-heavy traffic: mostly repeated questions (exact hits) and paraphrases (semantic hits)."""

from __future__ import annotations

import random

from locust import task

from loadtests.scenarios.common import GatewayUser

# Each entry: the canonical question and paraphrases of it.
FAMILIES = [
    ("What is the capital of France?", ["Which city is the capital of France?", "Name the capital city of France."]),
    ("How do I reverse a list in Python?",
     ["How can I reverse a Python list?", "What's the way to reverse a list in Python?"]),
    ("Why is the sky blue?", ["What makes the sky look blue?", "Why does the sky appear blue?"]),
    ("What is the difference between TCP and UDP?",
     ["How does TCP differ from UDP?", "TCP vs UDP: what is the difference?"]),
    ("Give me three tips for better sleep.",
     ["What are three ways to sleep better?", "Share three tips to improve sleep."]),
    ("How does a hash map work?", ["Explain how hash maps work.", "How do hash tables work internally?"]),
    ("What causes the seasons on Earth?", ["Why does Earth have seasons?", "What is the reason for Earth's seasons?"]),
    ("How do I make a cup of green tea?", ["What's the way to brew green tea?", "How should I prepare green tea?"]),
]


class CacheHeavyUser(GatewayUser):
    @task(7)
    def repeated(self) -> None:
        self.chat(random.choice(FAMILIES)[0], name="chat-repeat")

    @task(3)
    def paraphrased(self) -> None:
        self.chat(random.choice(random.choice(FAMILIES)[1]), name="chat-paraphrase")
