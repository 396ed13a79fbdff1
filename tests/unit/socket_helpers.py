"""Helpers for tests of the ingress's own sockets (relay, call channel)."""

from __future__ import annotations


def count_accepts(server) -> list[int]:
    """Wrap ``server._serve`` so each accepted connection appends to the returned list."""
    accepted: list[int] = []
    serve = server._serve

    async def counting(reader, writer):
        accepted.append(1)
        await serve(reader, writer)

    server._serve = counting
    return accepted
