"""`llmgw keys ...` and `llmgw usage` against a real local HTTP server serving the policy admin routes."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from typer.testing import CliRunner

from app.api.policy_admin import dispatch
from app.cli import cli
from app.config import AuthConfig
from app.errors import GatewayError
from app.policy.service import PolicyService
from app.policy.settings import PolicyConfig

ADMIN = "sk-llmgw-admin-test-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The admin routes exactly as the ingress maps them (one dispatcher), over HTTP."""
    svc = PolicyService(PolicyConfig(), auth_enabled=True, environ={})
    auth = AuthConfig(admin_key_env="LLMGW_TEST_CLI_ADMIN_KEY")
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def route(request: Request, path: str):
        body = await request.json() if await request.body() else None
        try:
            return await dispatch(svc, auth, request.method, request.url.path, request.headers,
                                  request.query_params, body, request.client.host)
        except GatewayError as err:
            return JSONResponse(err.to_dict(), status_code=err.status_code)

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve()), daemon=True)
    import os

    os.environ["LLMGW_TEST_CLI_ADMIN_KEY"] = ADMIN
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/admin/usage", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url, svc
    srv.should_exit = True
    thread.join(5)
    os.environ.pop("LLMGW_TEST_CLI_ADMIN_KEY", None)


def llmgw(*args: str, admin: str | None = ADMIN):
    env = {"LLMGW_ADMIN_KEY": admin or "", "COLUMNS": "200"}
    return CliRunner().invoke(cli, list(args), env=env)


def test_keys_create_list_update_rotate_revoke_and_usage(server, tmp_path, monkeypatch) -> None:
    url, _ = server
    monkeypatch.chdir(tmp_path)  # no .cache/admin_key here
    made = llmgw("keys", "create", "--tenant", "acme", "--name", "ci", "-m", "small", "--rpm", "30", "--url", url)
    assert made.exit_code == 0, made.output
    key = re.search(r"sk-llmgw-[A-Za-z0-9_-]{43,}", made.output).group(0)
    key_id = re.search(r"key_[0-9a-f]{16}", made.output).group(0)
    listed = llmgw("keys", "list", "--url", url)
    assert listed.exit_code == 0 and key_id in listed.output and key not in listed.output
    assert llmgw("keys", "update", key_id, "--rpm", "60", "--clear", "tpm", "--url", url).exit_code == 0
    assert '"rpm": 60' in llmgw("keys", "show", key_id, "--url", url).output
    rotated = llmgw("keys", "rotate", key_id, "--overlap", "10m", "--idempotency-key", "r1", "--url", url)
    again = llmgw("keys", "rotate", key_id, "--overlap", "10m", "--idempotency-key", "r1", "--url", url)
    new = re.search(r"sk-llmgw-[A-Za-z0-9_-]{43,}", rotated.output).group(0)
    assert new != key and new in again.output
    assert "revoked" in llmgw("keys", "revoke", key_id, "--url", url).output
    report = llmgw("usage", "--tenant", "acme", "--url", url)
    assert report.exit_code == 0 and "acme" in report.output and "budget left" in report.output


def test_admin_key_from_env_or_file_never_an_option(server, tmp_path, monkeypatch) -> None:
    url, _ = server
    monkeypatch.chdir(tmp_path)
    missing = llmgw("keys", "list", "--url", url, admin=None)
    assert missing.exit_code != 0 and "no admin key" in missing.output
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "admin_key").write_text(ADMIN + "\n")
    assert llmgw("keys", "list", "--url", url, admin=None).exit_code == 0  # read from .cache/admin_key
    wrong = llmgw("keys", "list", "--url", url, admin="sk-wrong")
    assert wrong.exit_code == 1 and "403" in wrong.output and "sk-wrong" not in wrong.output
    assert llmgw("keys", "list", "--admin-key", ADMIN, "--url", url).exit_code != 0  # no such option
