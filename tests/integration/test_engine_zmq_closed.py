"""Runs after the in-process engine tests (file order): they leave no open zmq socket behind. An open one makes
a later GC of vLLM's zmq context block forever in term() (a whole test session once hung on it)."""

from __future__ import annotations

import gc

import zmq


def test_no_open_zmq_sockets_after_the_engine_tests() -> None:
    gc.collect()
    live = [o for o in gc.get_objects() if isinstance(o, zmq.Socket) and not o.closed]
    assert live == [], live
