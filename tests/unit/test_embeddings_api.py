"""/v1/embeddings logic over the real all-MiniLM-L6-v2 (the router's embedder): OpenAI shape, float and
base64 (decoded as the SDK decodes it), MiniLM token usage, 400s for what it cannot honour."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from app.api.embeddings import EMBEDDING_MODEL, count_tokens, create_embeddings, parse_embedding_request
from app.embedding import get_embedder
from app.errors import GatewayError


async def embed(texts: list[str]) -> list[list[float]]:
    return [v.tolist() for v in get_embedder().encode(texts)]


def run(body: dict) -> dict:
    return asyncio.run(create_embeddings(parse_embedding_request(body), embed))


def test_float_batch_matches_the_router_embedder_and_counts_minilm_tokens() -> None:
    texts = ["The cat sat on the mat.", "Quantum chromodynamics"]
    out = run({"model": EMBEDDING_MODEL, "input": texts})
    assert out["object"] == "list" and out["model"] == EMBEDDING_MODEL
    assert [d["index"] for d in out["data"]] == [0, 1] and all(d["object"] == "embedding" for d in out["data"])
    expected = get_embedder().encode(texts)
    got = np.array([d["embedding"] for d in out["data"]], dtype=np.float32)
    assert got.shape == (2, 384) and np.allclose(got, expected, atol=1e-6)
    tokens = sum(count_tokens(texts))
    assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens} and tokens >= 8


def test_base64_decodes_like_the_openai_sdk() -> None:
    one = run({"model": EMBEDDING_MODEL, "input": "hello world", "encoding_format": "base64"})
    vec = np.frombuffer(base64.b64decode(one["data"][0]["embedding"]), dtype="float32")
    assert vec.shape == (384,) and np.allclose(vec, get_embedder().encode(["hello world"])[0], atol=1e-6)
    assert run({"model": EMBEDDING_MODEL, "input": "x", "dimensions": 384})["data"][0]["embedding"]


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "text-embedding-3-small", "input": "x"}, 404, "model"),
    ({"model": EMBEDDING_MODEL, "input": [1, 2, 3]}, 400, "input"),
    ({"model": EMBEDDING_MODEL, "input": [[1, 2], [3]]}, 400, "input"),
    ({"model": EMBEDDING_MODEL, "input": []}, 400, "input"),
    ({"model": EMBEDDING_MODEL, "input": ["ok", ""]}, 400, "input"),
    ({"model": EMBEDDING_MODEL, "input": "x", "dimensions": 256}, 400, "dimensions"),
    ({"model": EMBEDDING_MODEL, "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"model": EMBEDDING_MODEL, "input": "x", "extra": 1}, 400, "extra"),
    ({"model": EMBEDDING_MODEL, "input": "word " * 300}, 400, "input"),
])
def test_bad_requests(body: dict, status: int, param: str) -> None:
    with pytest.raises(GatewayError) as info:
        run(body)
    assert info.value.status_code == status and info.value.param == param
