"""Locust scenarios run headless against the echo server; the summary is parsed from the real CSVs."""

from __future__ import annotations

import csv
import socket

import pytest
from typer.testing import CliRunner

from loadtests import run
from loadtests.bench import echo_server
from loadtests.scenarios.shapes import phase_users


@pytest.fixture(scope="module")
def echo_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = echo_server.start(port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_build_command_is_headless_with_csv_and_html(tmp_path) -> None:
    cmd = run.build_command("cache-heavy", "http://h:1", 5, 30, tmp_path)
    assert "--headless" in cmd and cmd[cmd.index("--csv") + 1] == str(tmp_path / "cache_heavy")
    assert cmd[cmd.index("--html") + 1].endswith("cache_heavy.html") and "30s" in cmd
    with pytest.raises(ValueError):
        run.build_command("nope", "http://h:1", 1, 1, tmp_path)


def test_streaming_run_reports_ttft_and_tpot(echo_url: str, tmp_path) -> None:
    summary, out = run.run_scenario("streaming", echo_url, users=2, duration=3, out_dir=tmp_path)
    assert summary["requests"] > 0 and summary["error_rate"] == 0.0
    assert summary["ttft_p50_ms"] is not None and summary["tpot_p50_ms"] is not None
    assert summary["cache_hit_rate"] is None  # the echo server sends no cache header
    assert (out / "streaming.html").exists() and (out / "summary.json").exists()
    rows = run.read_stats(out / "streaming_stats.csv")
    ttft = next(r for r in rows if r["Type"] == "TTFT")
    assert int(ttft["Request Count"]) > 0
    text = run.format_summary("streaming", summary)
    assert "req/s" in text and "TTFT p50" in text


def test_summary_from_csv_counts_cache_hits_and_skips_custom_rows(tmp_path) -> None:
    header = ["Type", "Name", "Request Count", "Failure Count", "Requests/s", "50%", "95%", "99%"]
    rows = [["POST", "chat", "100", "5", "10.0", "20", "40", "80"],
            ["CACHE", "hit-exact", "60", "0", "6.0", "0", "0", "0"],
            ["CACHE", "hit-semantic", "15", "0", "1.5", "0", "0", "0"],
            ["CACHE", "miss", "25", "0", "2.5", "0", "0", "0"],
            ["RATELIMIT", "tenant-heavy", "7", "0", "0.7", "0", "0", "0"],
            ["", "Aggregated", "207", "5", "20.7", "1", "40", "80"]]
    with (tmp_path / "x_stats.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    s = run.summarize(tmp_path / "x")
    assert s["requests"] == 100 and s["error_rate"] == 0.05 and s["rps"] == 10.0
    assert s["p50_ms"] == 20 and s["p99_ms"] == 80
    assert s["cache_hit_rate"] == 0.75 and s["rate_limited"] == {"tenant-heavy": 7}


def test_cli_runs_a_scenario(echo_url: str, tmp_path) -> None:
    from app.cli import cli

    result = CliRunner().invoke(cli, ["loadtest", "chat", "--host", echo_url, "--users", "2", "--duration", "2",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "scenario chat:" in result.output and (tmp_path / "chat_stats.csv").exists()


def test_burst_shape_spikes_in_the_middle() -> None:
    assert [phase_users(t, 100, 50) for t in (0, 29, 30, 59, 60, 99)] == [10, 10, 50, 50, 10, 10]
    assert phase_users(100, 100, 50) is None



def test_chat_body_sends_ignore_eos_only_when_asked() -> None:
    """In a process of its own: importing locust monkey-patches the interpreter (gevent)."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json; from loadtests.scenarios.common import chat_body; from app.schemas import "
            "ChatCompletionRequest as R; b = chat_body('hi', stream=True); R.model_validate(b); print(json.dumps(b))")
    bodies = []
    for flag in ("", "1"):
        env = {**os.environ, "LLMGW_IGNORE_EOS": flag}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
        bodies.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "ignore_eos" not in bodies[0] and bodies[1]["ignore_eos"] is True  # and the gateway's schema takes it
