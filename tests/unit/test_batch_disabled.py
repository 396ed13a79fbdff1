"""Without Redis there is no batch lane: every Files/Batches/async route answers one clear OpenAI-shape
404 (``batch_lane_disabled``, saying how to enable it), and ``llmgw batch`` prints it in one line."""

from __future__ import annotations

import httpx2
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from openai import NotFoundError, OpenAI
from typer.testing import CliRunner

from app.api.batch_scope import batch_scope
from app.batch import cli as batch_cli
from app.http_errors import install_error_handlers


def disabled_app() -> FastAPI:
    api = FastAPI()
    install_error_handlers(api)

    @api.api_route("/v1/{rest:path}", methods=["GET", "POST"])
    async def route(request: Request, rest: str):
        await batch_scope(None, None, request.headers, request.url.path)  # the ingress's lane-less service

    return api


def client(app: FastAPI) -> OpenAI:
    """A sync SDK client whose requests the app answers (through Starlette's test client)."""
    test = TestClient(app)

    def handle(request: httpx2.Request) -> httpx2.Response:
        resp = test.request(request.method, request.url.path, content=request.read(),
                            headers={"content-type": request.headers.get("content-type", "")})
        return httpx2.Response(resp.status_code, content=resp.content, headers={"content-type": "application/json"})

    return OpenAI(base_url="http://test/v1", api_key="k", max_retries=0,
                  http_client=httpx2.Client(transport=httpx2.MockTransport(handle), base_url="http://test"))


def test_every_batch_route_answers_404_batch_lane_disabled_in_openai_shape() -> None:
    sdk = client(disabled_app())
    calls = [lambda: sdk.files.create(file=("a.jsonl", b"{}\n"), purpose="batch"), lambda: sdk.files.list(),
             lambda: sdk.batches.create(input_file_id="file-x", endpoint="/v1/chat/completions",
                                        completion_window="24h"),
             lambda: sdk.batches.retrieve("batch_x"), lambda: sdk.batches.list()]
    for call in calls:
        with pytest.raises(NotFoundError) as info:
            call()
        err = info.value.body
        assert err["code"] == "batch_lane_disabled" and err["type"] == "invalid_request_error"
        assert "LLMGW_REDIS__URL" in err["message"] and "redis.url" in err["message"]


def test_cli_prints_the_refusal_in_one_line_and_exits_1(monkeypatch, tmp_path) -> None:
    app = disabled_app()
    monkeypatch.setattr(batch_cli, "_client", lambda url, key, tenant: client(app))
    f = tmp_path / "in.jsonl"
    f.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n')
    result = CliRunner().invoke(batch_cli.batch_app, ["submit", str(f)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error 404 batch_lane_disabled: The batch lane" in result.output
    result = CliRunner().invoke(batch_cli.batch_app, ["status", "batch_x"])
    assert result.exit_code == 1 and "batch_lane_disabled" in result.output


def test_cli_unreachable_gateway_is_one_line() -> None:
    result = CliRunner().invoke(batch_cli.batch_app, ["status", "batch_x", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach the gateway" in result.output
