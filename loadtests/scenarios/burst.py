"""Burst / spike: a baseline of users, a sudden spike to the full ``--users`` count, then back.

The shape reads ``--users`` (peak) and ``--run-time`` from the command line: 0-30% of the run at a
fifth of the peak, 30-60% at the peak (spawned within a second), the rest at the baseline again.
"""

from __future__ import annotations

from locust import LoadTestShape, task

from loadtests.scenarios.common import GatewayUser, random_question
from loadtests.scenarios.shapes import phase_users


class BurstUser(GatewayUser):
    @task
    def ask(self) -> None:
        self.chat(random_question(), name="chat-burst")


class SpikeShape(LoadTestShape):
    def tick(self):
        opts = self.runner.environment.parsed_options
        peak = int(getattr(opts, "num_users", None) or 10)
        run_time = float(getattr(opts, "run_time", None) or 60)
        users = phase_users(self.get_run_time(), run_time, peak)
        return None if users is None else (users, max(peak, 1))
