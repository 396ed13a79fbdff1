"""Fault scenario: steady chat + streaming traffic to run while replicas are killed or upstreams fail.

Every answer's ``x-llmgw-path`` (routed pool, other pool, provider, stale cache) is recorded as a
``PATH`` custom event, so the summary shows how traffic was served during the fault; 5xx count as
failures. Prompts carry a random id so the cache does not hide the fault.
"""

from __future__ import annotations

import uuid

from locust import task

from loadtests.scenarios.common import GatewayUser, random_question


class FaultUser(GatewayUser):
    @task(3)
    def ask(self) -> None:
        self.chat(f"{random_question()} [{uuid.uuid4().hex[:8]}]", name="chat-fault")

    @task(1)
    def ask_streaming(self) -> None:
        self.chat_stream(f"{random_question()} [{uuid.uuid4().hex[:8]}]", name="stream-fault")
