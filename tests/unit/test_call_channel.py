"""Calls to the single cache replica over its own socket (app/call_channel.py), over real loopback sockets."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from app.call_channel import ChannelBroken, ChannelClient, ChannelEndpoint, ChannelServer
from app.errors import InvalidRequestError
from app.stream_relay import _frame, _read_frame
from tests.unit.socket_helpers import count_accepts


def run(coro):
    return asyncio.run(coro)


class Replica:
    """Handlers as the cache deployment gives them; records what ran."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.release = asyncio.Event()

    async def lookup(self, query: str, carrier: dict | None = None) -> dict:
        self.calls.append(("lookup", query, carrier))
        return {"query": query, "hit": query.startswith("known")}

    async def fail(self) -> None:
        raise InvalidRequestError("bad query", param="q")

    async def slow(self) -> str:
        self.calls.append(("slow",))
        await self.release.wait()
        return "late"


def serving(replica: Replica) -> ChannelServer:
    return ChannelServer({"lookup": replica.lookup, "fail": replica.fail, "slow": replica.slow})


def test_calls_return_results_and_reuse_one_connection():
    async def main():
        replica = Replica()
        server = serving(replica)
        accepted = count_accepts(server)
        discovered = []

        async def discover():
            discovered.append(1)
            return await server.endpoint()

        client = ChannelClient(discover)
        first = await client.call("lookup", "known q", {"traceparent": "x"})
        second = await client.call("lookup", "other q")
        await server.aclose()
        return first, second, replica.calls, len(accepted), len(discovered)

    first, second, calls, accepted, discovered = run(main())
    assert first == {"query": "known q", "hit": True} and second == {"query": "other q", "hit": False}
    assert calls == [("lookup", "known q", {"traceparent": "x"}), ("lookup", "other q", None)]
    assert accepted == 1 and discovered == 1  # one connection, one endpoint question for both calls


def test_the_replicas_exception_is_raised_at_the_caller():
    async def main():
        server = serving(Replica())
        client = ChannelClient(server.endpoint)
        with pytest.raises(InvalidRequestError, match="bad query"):
            await client.call("fail")
        with pytest.raises(AttributeError, match="no channel method"):
            await client.call("nope")
        ok = await client.call("lookup", "known after errors")  # the connection still works after both
        await server.aclose()
        return ok

    assert run(main())["hit"] is True


def test_a_connection_without_the_token_is_never_unpickled():
    class Bomb:
        def __reduce__(self):
            return (exploded.append, ("unpickled",))

    async def main():
        server = serving(Replica())
        ep = await server.endpoint()
        reader, writer = await asyncio.open_connection(ep.host, ep.port)
        writer.write(b"0" * 32 + b"\n" + _frame(("lookup", (Bomb(),))))
        await writer.drain()
        closed = await reader.read() == b""  # the server hangs up without a reply
        writer.close()
        await server.aclose()
        return closed, repr(ep)

    exploded: list[str] = []
    closed, shown = run(main())
    assert closed and exploded == []
    assert "token" not in shown and len(shown) < 40  # the capability never reaches a log line


def test_a_replica_that_went_away_is_channel_broken_and_the_next_call_asks_again():
    async def main():
        servers = [serving(Replica()), serving(Replica())]
        asked = []

        async def discover():
            asked.append(1)
            return await servers[len(asked) - 1].endpoint()

        client = ChannelClient(discover)
        assert (await client.call("lookup", "known one"))["hit"]
        await servers[0].aclose()  # the replica restarts: its port is gone, its pooled connection dies
        for conn in list(client._idle):
            conn[1].close()
        await asyncio.sleep(0.05)
        with pytest.raises(ChannelBroken):
            await client.call("lookup", "during the restart")
        again = await client.call("lookup", "known two")  # a fresh endpoint from the new replica
        await servers[1].aclose()
        return again, len(asked)

    again, asked = run(main())
    assert again["hit"] and asked == 2


def test_a_cancelled_call_does_not_leave_its_connection_for_the_next():
    async def main():
        replica = Replica()
        server = serving(replica)
        client = ChannelClient(server.endpoint)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.call("slow"), 0.2)
        replica.release.set()
        # the late reply of the abandoned call must not be read as this call's answer
        out = await client.call("lookup", "known next")
        await server.aclose()
        return out, client._idle

    out, idle = run(main())
    assert out == {"query": "known next", "hit": True} and len(idle) == 1


def test_frames_are_the_relays_length_prefixed_pickles():
    async def main():
        replica = Replica()
        server = serving(replica)
        ep = await server.endpoint()
        reader, writer = await asyncio.open_connection(ep.host, ep.port)
        writer.write(ep.token.encode() + b"\n" + _frame(("lookup", ("known raw",))))
        ready = await _read_frame(reader)
        kind, value = await _read_frame(reader)
        writer.close()
        await server.aclose()
        return ready, kind, value

    assert run(main()) == (("ready", None), "ok", {"query": "known raw", "hit": True})
    assert pickle.loads(_frame(("ok", 1))[4:]) == ("ok", 1)


def test_another_server_on_the_endpoints_port_is_channel_broken_not_its_answer():
    from app.stream_relay import RelayServer

    async def main():
        other = RelayServer()  # e.g. a pool replica's relay socket that came up on the cache replica's old port
        await other.start()
        replica = Replica()
        server = serving(replica)
        endpoints = [ChannelEndpoint(other.host, other.port, "a" * 32), None]

        async def discover():
            return endpoints.pop(0) or await server.endpoint()

        client = ChannelClient(discover)
        with pytest.raises(ChannelBroken):
            await client.call("lookup", "known q")
        again = await client.call("lookup", "known q")  # asked for the endpoint again: the real replica
        await other.aclose()
        await server.aclose()
        return again, replica.calls

    again, calls = run(main())
    assert again["hit"] and len(calls) == 1


class FakeMethod:
    """A Serve handle method: ``.remote(*args)`` gives an awaitable (what the handle path of CacheHandle awaits)."""

    def __init__(self, name: str, log: list, result=None) -> None:
        self.name, self.log, self.result = name, log, result

    def remote(self, *args):
        self.log.append((self.name, args))

        async def answer():
            out = self.result(*args) if callable(self.result) else self.result
            return await out if asyncio.iscoroutine(out) else out

        return answer()


class FakeCacheHandle:
    def __init__(self, server: ChannelServer | None) -> None:
        self.log: list = []
        self.channel = FakeMethod("channel", self.log, lambda: server.endpoint())
        self.lookup = FakeMethod("lookup", self.log, "by handle")
        self.store = FakeMethod("store", self.log, None)


def test_the_cache_client_uses_the_channel_and_falls_back_to_the_handle():
    from deployments.ingress_backends import CacheHandle

    async def main():
        replica = Replica()
        server = serving(replica)
        handle = FakeCacheHandle(server)
        client = CacheHandle(handle, channel=True)
        over_channel = await client.lookup("known q")
        await server.aclose()  # the replica goes away: this call by handle, then the endpoint is asked again
        client.channel.forget_idle()
        by_handle = await client.lookup("known q")
        plain = CacheHandle(FakeCacheHandle(None), channel=False)
        never = await plain.lookup("known q")
        return over_channel, by_handle, never, handle.log, plain.handle.log

    over_channel, by_handle, never, log, plain_log = run(main())
    assert over_channel["hit"] is True and by_handle == "by handle" and never == "by handle"
    assert [name for name, _ in log] == ["channel", "lookup"]  # one endpoint question, one handle fallback
    assert [name for name, _ in plain_log] == ["lookup"]
