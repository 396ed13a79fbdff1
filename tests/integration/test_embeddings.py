"""/v1/embeddings through the real graph with the official SDK (which asks for base64 by default)."""

from __future__ import annotations

import numpy as np
import openai
import pytest

pytestmark = pytest.mark.gateway


def test_embeddings_batch_float_and_base64(gateway_url: str, client) -> None:
    sdk = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused-locally", max_retries=0)
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Stock markets fell sharply."]
    resp = sdk.embeddings.create(model="all-minilm-l6-v2", input=texts)  # SDK default: base64, decoded by it
    vectors = np.array([d.embedding for d in resp.data])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # a real sentence model: paraphrases are closer
    assert resp.usage.prompt_tokens == resp.usage.total_tokens >= 12 and resp.model == "all-minilm-l6-v2"
    raw = client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": texts[0],
                                               "encoding_format": "float"}).json()
    assert np.allclose(raw["data"][0]["embedding"], vectors[0], atol=1e-5)


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "text-embedding-3-small", "input": "x"}, 404, "model"),
    ({"model": "all-minilm-l6-v2", "input": [[1, 2, 3]]}, 400, "input"),
    ({"model": "all-minilm-l6-v2", "input": "x", "dimensions": 128}, 400, "dimensions"),
])
def test_embeddings_bad_input(client, body: dict, status: int, param: str) -> None:
    resp = client.post("/v1/embeddings", json=body)
    assert resp.status_code == status and resp.json()["error"]["param"] == param
