"""The simulated cluster's ports come from outside the OS's ephemeral range, so an outgoing connection cannot
take one between its pick and the bind of the process it is meant for."""

from __future__ import annotations

import socket

from loadtests.local_cluster import free_port


def _ephemeral() -> range:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    return range(low, high + 1)


def test_free_ports_bind_and_stay_out_of_the_ephemeral_range() -> None:
    ports = {free_port() for _ in range(50)}
    assert len(ports) > 40  # random, not one fixed port
    assert not ports & set(_ephemeral())
    for port in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_taken_port_is_not_handed_out(monkeypatch) -> None:
    import loadtests.local_cluster as lc

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        monkeypatch.setattr(lc, "_PORTS", range(taken, taken + 1))  # only the taken one: the OS's pick instead
        assert taken not in {free_port() for _ in range(5)}
