"""Fast API fuzzing without Ray: the ingress' real /openapi.json and request path (body reading, pipeline,
rendering, error mapping) on in-process backends, with schemathesis over ASGI. The live-graph run is
tests/integration/test_schemathesis.py; this one finds the same class of bug (a 5xx, an error not in
OpenAI's shape) in seconds, on every unit run."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import Response  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from app.api.completions import complete  # noqa: E402
from app.api.embeddings_handler import embeddings  # noqa: E402
from app.api.model_list import list_models  # noqa: E402
from app.api.responses_handler import responses  # noqa: E402
from app.http_errors import install_error_handlers  # noqa: E402
from tests.fuzz_checks import CHECKS, steer  # noqa: E402
from tests.unit.test_pipeline import Cache, Pools, Router, config, make  # noqa: E402

EXAMPLES = int(__import__("os").environ.get("FUZZ_EXAMPLES", "20"))
ROUTES = r"^/v1/(chat/completions|completions|embeddings|responses|models)$"


def build_app() -> FastAPI:
    from deployments.ingress import api as ingress_api

    cfg = config()
    pipe, _, _ = make(cfg=cfg, pools=Pools(), router=Router(), cache=Cache())
    names = cfg.model_names()
    limit = 256 * 1024

    async def embed(texts):
        return [[0.1] * 384 for _ in texts]

    app = FastAPI()
    install_error_handlers(app)
    app.openapi = ingress_api.openapi  # the ingress' own document

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await complete(pipe, request, "chat", limit)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await complete(pipe, request, "completions", limit)

    @app.post("/v1/embeddings")
    async def embeddings_route(request: Request) -> Response:
        return await embeddings(request, embed, limit, pipe.stage("authenticate"))

    @app.post("/v1/responses")
    async def responses_route(request: Request) -> Response:
        return await responses(pipe, request, limit)

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        return await list_models(pipe.stage("authenticate").policy, names, request.headers)

    return app


APP = build_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=ROUTES)
schema.config.generation.update(max_examples=EXAMPLES)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzz_request_path_in_process(case) -> None:
    steer(case)
    response = case.call()
    case.validate_response(response, checks=CHECKS)
