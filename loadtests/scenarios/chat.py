"""Non-streaming chat: varied short questions at the default model ("auto")."""

from __future__ import annotations

from locust import task

from loadtests.scenarios.common import GatewayUser, random_question


class ChatUser(GatewayUser):
    @task
    def ask(self) -> None:
        self.chat(random_question())
