"""The vLLM general plugin that shortens the CPU worker's busy-wait (app/engines/vllm_spin.py)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

shm_broadcast = pytest.importorskip("vllm.distributed.device_communicators.shm_broadcast")
zmq = pytest.importorskip("zmq")

from app.engines import vllm_spin  # noqa: E402


@pytest.fixture
def restore():
    cls = shm_broadcast.SpinCondition
    saved = cls.__init__, getattr(cls, "_llmgw_busy_loop_s", None)
    yield cls
    cls.__init__ = saved[0]
    if saved[1] is None and hasattr(cls, "_llmgw_busy_loop_s"):
        del cls._llmgw_busy_loop_s


def _reader(context) -> object:
    from vllm.utils.network_utils import get_open_zmq_ipc_path

    address = get_open_zmq_ipc_path()
    writer = shm_broadcast.SpinCondition(is_reader=False, context=context, notify_address=address)
    return writer, shm_broadcast.SpinCondition(is_reader=True, context=context, notify_address=address)


def test_registered_for_vllm():
    names = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert names.get("llmgw_busy_loop") == "app.engines.vllm_spin:register"


def test_unset_changes_nothing(monkeypatch, restore):
    monkeypatch.delenv(vllm_spin.ENV, raising=False)
    before = restore.__init__
    vllm_spin.register()
    assert restore.__init__ is before
    context = zmq.Context()
    _, reader = _reader(context)
    assert reader.busy_loop_s == 1  # vLLM's own default
    context.destroy(linger=0)


def test_set_shortens_every_reader(monkeypatch, restore):
    monkeypatch.setenv(vllm_spin.ENV, "0.002")
    vllm_spin.register()
    vllm_spin.register()  # loaded twice in one process (engine core + arg parsing): still one wrapper
    context = zmq.Context()
    _, reader = _reader(context)
    assert reader.busy_loop_s == 0.002
    context.destroy(linger=0)


def test_negative_is_refused(monkeypatch, restore):
    monkeypatch.setenv(vllm_spin.ENV, "-1")
    with pytest.raises(ValueError, match=vllm_spin.ENV):
        vllm_spin.register()
