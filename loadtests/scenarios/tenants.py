"""Mixed tenants with rate limits: a heavy tenant that should hit its limit and light tenants that should not.

Tenants are sent as ``x-llmgw-tenant`` (auth-off configs) or, if ``LLMGW_TENANT_KEYS`` is set to
``tenant=key,tenant=key``, as Bearer API keys. 429 is an expected answer here: it counts as a success
of the HTTP request and is recorded as a ``RATELIMIT`` custom event named after the tenant.
"""

from __future__ import annotations

import os

from locust import between, constant, task

from loadtests.scenarios.common import GatewayUser, fire, random_question


def _keys() -> dict[str, str]:
    raw = os.environ.get("LLMGW_TENANT_KEYS", "")
    return dict(pair.split("=", 1) for pair in raw.split(",") if "=" in pair)


class TenantUser(GatewayUser):
    abstract = True

    def headers(self) -> dict[str, str]:
        key = _keys().get(self.tenant or "")
        return {"Authorization": f"Bearer {key}"} if key else {"x-llmgw-tenant": self.tenant or "default"}

    @task
    def ask(self) -> None:
        status = self.chat(random_question(), name=f"chat [{self.tenant}]", ok_statuses=(200, 429))
        if status == 429:
            fire(self.environment, "RATELIMIT", self.tenant or "default")


class HeavyTenant(TenantUser):
    weight = 2
    tenant = "tenant-heavy"
    wait_time = constant(0)


class LightTenantA(TenantUser):
    weight = 1
    tenant = "tenant-a"
    wait_time = between(0.5, 1.5)


class LightTenantB(TenantUser):
    weight = 1
    tenant = "tenant-b"
    wait_time = between(0.5, 1.5)
