"""SSE framing (including a stream that breaks mid-way) and the routing decision fallbacks."""

import asyncio
import json

import numpy as np

from app.config import RouterConfig
from app.errors import UpstreamError
from app.generation import GenerationChunk
from app.route_decision import decide_route
from app.sse import sse_stream


async def _agen(items, fail_after: int | None = None):
    for i, item in enumerate(items):
        if fail_after is not None and i == fail_after:
            raise UpstreamError("pool died")
        yield item


def _events(chunks: list[bytes]) -> list:
    out = []
    for raw in chunks:
        assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
        payload = raw[6:-2]
        out.append(payload.decode() if payload == b"[DONE]" else json.loads(payload))
    return out


def _run(first, rest, **kw) -> list:
    async def collect():
        return [c async for c in sse_stream(rid="r1", model="m", first=first, rest=rest, **kw)]

    return _events(asyncio.run(collect()))


def test_chat_stream_with_usage() -> None:
    first = GenerationChunk("Hel", None, 3, 1, "m")
    rest = _agen([GenerationChunk("lo", "stop", 3, 2, "m")])
    events = _run(first, rest, chat=True, include_usage=True)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [e["choices"][0]["delta"]["content"] for e in events[1:3]] == ["Hel", "lo"]
    assert events[2]["choices"][0]["finish_reason"] == "stop"
    assert events[3]["choices"] == [] and events[3]["usage"]["total_tokens"] == 5
    assert events[-1] == "[DONE]"


def test_broken_stream_ends_with_error_event_and_done() -> None:
    first = GenerationChunk("a", None, 1, 1, "m")
    rest = _agen([GenerationChunk("b", None, 1, 2, "m"), GenerationChunk("c", None, 1, 3, "m")], fail_after=1)
    events = _run(first, rest, chat=False, include_usage=True)
    assert [e["choices"][0]["text"] for e in events[:2]] == ["a", "b"]
    assert events[2]["error"]["type"] == "upstream_error" and events[2]["error"]["message"]
    assert events[3] == "[DONE]"


class _Clf:
    threshold = 0.5

    def __init__(self, score=None, fail=False):
        self._score, self._fail = score, fail

    def score(self, text, embedding):
        if self._fail:
            raise RuntimeError("boom")
        return self._score


def test_decide_route() -> None:
    cfg = RouterConfig(default_pool="small")
    emb = np.zeros(384, dtype=np.float32)
    assert decide_route(_Clf(0.9), "q", emb, cfg).pool == "large"
    assert decide_route(_Clf(0.1), "q", emb, cfg).pool == "small"
    assert decide_route(_Clf(0.4), "q", emb, RouterConfig(threshold=0.3)).pool == "large"
    assert decide_route(None, "q", emb, cfg).reason == "no-classifier"
    assert decide_route(_Clf(0.9), "q", None, cfg).reason == "no-embedding"
    failed = decide_route(_Clf(fail=True), "q", emb, cfg)
    assert failed.pool == "small" and failed.reason == "classifier-error"


def test_split_text_round_trips() -> None:
    from app.sse import split_text

    for text in [" leading space and more words here", "trailing  ", "", "one", "a  b\nc\td " * 10]:
        pieces = split_text(text)
        assert "".join(pieces) == text
        assert all(len(p) <= 40 for p in pieces)
