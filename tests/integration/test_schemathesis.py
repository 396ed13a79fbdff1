"""API fuzzing (issue 14): schemathesis against the live graph's own /openapi.json (app/api/openapi.py).

Every operation of the OpenAI-compatible surface (chat/completions, completions, embeddings, responses,
models, usage) and the health endpoints gets a bounded number of generated requests, valid and invalid
ones. Each answer must be: no 5xx other than a documented 502/503 (which carry ``Retry-After``), every
error in OpenAI's shape, the status, content type and headers the document declares. Admin, batch and
file routes change shared state and are not fuzzed here. tests/unit/test_fuzz_pipeline.py runs the same
checks in-process (no Ray) on every unit run.

Bounded for CI: ``FUZZ_EXAMPLES`` generated cases per operation and mode (valid / invalid data; default 25).
``LLMGW_FUZZ_URL=http://127.0.0.1:8000 pytest tests/integration/test_schemathesis.py`` fuzzes a running gateway.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402 (after the importorskip)

from tests.fuzz_checks import CHECKS, steer  # noqa: E402

pytestmark = pytest.mark.gateway
OPERATIONS = [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
              ("POST", "/v1/responses"), ("GET", "/v1/models"), ("GET", "/v1/usage"), ("GET", "/healthz"),
              ("GET", "/readyz")]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


def fuzz_schema(base_url: str):
    """The live document."""
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=30)


@pytest.fixture(scope="module")
def fuzz_url(request) -> str:
    """The test graph, or a gateway already running at ``LLMGW_FUZZ_URL`` (e.g. ``make run``'s)."""
    return os.environ.get("LLMGW_FUZZ_URL") or request.getfixturevalue("gateway_url")


@pytest.fixture(scope="module")
def api_schema(fuzz_url: str):
    return fuzz_schema(fuzz_url)


# (schemathesis' own pytest parametrisation via from_fixture breaks on pytest 9: it writes node._nodeid)
@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_fuzz_openai_surface(api_schema, fuzz_url: str, method: str, path: str, mode: str) -> None:
    from schemathesis.generation.modes import GenerationMode

    operation = api_schema[path][method]
    if mode == "negative" and "requestBody" not in operation.definition.raw:
        pytest.skip("nothing to negate: no parameters, no body")
    sent: list[int] = []

    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def fuzz(case) -> None:
        steer(case)
        response = case.call(base_url=fuzz_url, timeout=120)
        sent.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    fuzz()
    assert sent  # the operation was exercised
