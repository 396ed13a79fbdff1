"""`llmgw cache` admin commands read the admin key from the environment or a file, never argv."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.caching.cli import cache_app, read_admin_key


@pytest.fixture()
def admin_server() -> Iterator[tuple[str, list[str | None]]]:
    """A real local HTTP server standing in for the gateway's admin endpoints: records Authorization."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_read_admin_key_order(tmp_path: Path) -> None:
    explicit, default = tmp_path / "explicit", tmp_path / "default"
    explicit.write_text("from-file\n")
    assert read_admin_key(explicit, env={"LLMGW_ADMIN_KEY": "from-env"}, default_file=default) == "from-file"
    assert read_admin_key(None, env={"LLMGW_ADMIN_KEY": "from-env"}, default_file=default) == "from-env"
    assert read_admin_key(None, env={}, default_file=default) is None  # default file absent
    default.write_text("  from-default  \n")
    assert read_admin_key(None, env={}, default_file=default) == "from-default"
    with pytest.raises(typer.BadParameter, match="cannot read"):
        read_admin_key(tmp_path / "missing", env={}, default_file=default)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(typer.BadParameter, match="empty"):
        read_admin_key(tmp_path / "empty", env={}, default_file=default)


def test_cli_sends_the_key_from_env_or_file(admin_server, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = admin_server
    monkeypatch.chdir(tmp_path)  # no .cache/admin_key here
    runner = CliRunner()
    result = runner.invoke(cache_app, ["stats", "--url", url], env={"LLMGW_ADMIN_KEY": "sk-env"})
    assert result.exit_code == 0, result.output
    key_file = tmp_path / "key"
    key_file.write_text("sk-file\n")
    result = runner.invoke(cache_app, ["flush", "--url", url, "--admin-key-file", str(key_file)],
                           env={"LLMGW_ADMIN_KEY": ""})
    assert result.exit_code == 0, result.output
    assert seen == ["Bearer sk-env", "Bearer sk-file"]


def test_cli_refuses_the_plaintext_flag(admin_server) -> None:
    url, seen = admin_server
    result = CliRunner().invoke(cache_app, ["invalidate", "--url", url, "--tenant", "t", "--admin-key", "sk-x"])
    assert result.exit_code == 2 and "--admin-key-file" in result.output
    assert "sk-x" not in result.output and seen == []  # nothing sent, the key not echoed
    assert "--admin-key " not in CliRunner().invoke(cache_app, ["stats", "--help"]).output
