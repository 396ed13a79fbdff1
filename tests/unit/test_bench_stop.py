"""The benches' ``_stop`` takes down a target's whole process tree, also what left its process group (as Ray's
workers and the vLLM engines under them do)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from loadtests.bench.gateway_vs_vllm import _start, _stop


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_stop_kills_a_descendant_in_its_own_session(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
            f" start_new_session=True); open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    proc = _start([sys.executable, "-c", code], dict(os.environ), str(tmp_path / "target.log"))
    for _ in range(100):
        if marker.exists() and marker.read_text():
            break
        time.sleep(0.05)
    grandchild = int(marker.read_text())
    assert _alive(grandchild)
    try:
        _stop(proc, grace=3)
        time.sleep(0.3)
        assert proc.poll() is not None
        assert not _alive(grandchild)
    finally:
        if _alive(grandchild):
            os.kill(grandchild, 9)
