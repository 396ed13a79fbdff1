"""Streaming chat: TTFT and TPOT per request as custom metrics (request types ``TTFT``/``TPOT``)."""

from __future__ import annotations

import os

from locust import task

from loadtests.scenarios.common import GatewayUser, random_question


class StreamingUser(GatewayUser):
    @task
    def ask_streaming(self) -> None:
        self.chat_stream(random_question(), max_tokens=int(os.environ.get("LLMGW_MAX_TOKENS", "64")))
