"""External providers over their real wire formats (OpenAI chat completions, Anthropic messages),
streamed with httpx and translated to GenerationChunk. Keys are read from the environment at call
time and never appear in errors or logs."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from app.errors import UpstreamError, upstream_error
from app.generation import GenerationChunk, GenerationRequest
from app.resilience.settings import ProviderConfig


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class Provider:
    """Base: HTTP + SSE + error mapping. Subclasses translate the request and the events."""

    path = ""

    def __init__(self, cfg: ProviderConfig, client: httpx.AsyncClient | None = None) -> None:
        self.cfg = cfg
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 5)))

    def _key(self) -> str:
        key = os.environ.get(self.cfg.api_key_env)
        if not key:
            raise upstream_error(f"provider '{self.cfg.name}' has no API key configured ({self.cfg.api_key_env} "
                                 "is unset)", retryable=False, code="provider_not_configured")
        return key

    def headers(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def body(self, req: GenerationRequest) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, event: str | None, data: dict[str, Any], state: dict[str, Any]) -> GenerationChunk | None:
        raise NotImplementedError

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        url = self.cfg.base_url.rstrip("/") + self.path
        state: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "done": False, "finish": "stop"}
        name = self.cfg.name
        try:
            async with self.client.stream("POST", url, json=self.body(req), headers=self.headers(self._key())) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    retryable = resp.status_code == 429 or resp.status_code >= 500
                    raise upstream_error(f"provider '{name}' answered HTTP {resp.status_code}", retryable=retryable,
                                         retry_after=_retry_after(resp), code=f"upstream_{resp.status_code}")
                event = None
                async for line in resp.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        payload = line[5:].strip()
                        if payload == "[DONE]":
                            state["done"] = True
                            break
                        chunk = self.parse(event, json.loads(payload), state)
                        if chunk is not None:
                            yield chunk
                        if state["done"]:
                            break
        except UpstreamError:
            raise
        except httpx.TimeoutException:
            raise upstream_error(f"provider '{name}' timed out", retryable=True, code="upstream_timeout") from None
        except (httpx.TransportError, json.JSONDecodeError) as exc:
            raise upstream_error(f"provider '{name}' connection failed ({type(exc).__name__})", retryable=True,
                                 code="upstream_connection") from None
        if not state["done"]:
            raise upstream_error(f"provider '{name}' stream ended early", retryable=True, code="upstream_broken_stream")
        yield GenerationChunk("", state["finish"], state["prompt_tokens"], state["completion_tokens"], self.cfg.model)

    async def aclose(self) -> None:
        await self.client.aclose()


class OpenAIProvider(Provider):
    path = "/chat/completions"

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def body(self, req: GenerationRequest) -> dict[str, Any]:
        s = req.sampling
        messages = req.messages or [{"role": "user", "content": req.prompt or ""}]
        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages, "stream": True,
                                "stream_options": {"include_usage": True},
                                "max_tokens": s.max_tokens or self.cfg.max_tokens_default,
                                "temperature": s.temperature, "top_p": s.top_p}
        if s.stop:
            body["stop"] = s.stop
        if s.seed is not None:
            body["seed"] = s.seed
        return body

    def parse(self, event: str | None, data: dict[str, Any], state: dict[str, Any]) -> GenerationChunk | None:
        if "error" in data:
            raise upstream_error(f"provider '{self.cfg.name}' stream error", retryable=True, code="upstream_stream")
        usage = data.get("usage") or {}
        if usage:
            state["prompt_tokens"] = usage.get("prompt_tokens", 0)
            state["completion_tokens"] = usage.get("completion_tokens", 0)
        for choice in data.get("choices") or []:
            if choice.get("finish_reason"):
                state["finish"] = "length" if choice["finish_reason"] == "length" else "stop"
            text = (choice.get("delta") or {}).get("content") or ""
            if text:
                return GenerationChunk(text, None, state["prompt_tokens"], state["completion_tokens"], self.cfg.model)
        return None


class AnthropicProvider(Provider):
    path = "/v1/messages"

    def headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}

    def body(self, req: GenerationRequest) -> dict[str, Any]:
        s = req.sampling
        messages = [m for m in (req.messages or [{"role": "user", "content": req.prompt or ""}])
                    if m["role"] in ("user", "assistant")]
        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages, "stream": True,
                                "max_tokens": s.max_tokens or self.cfg.max_tokens_default,
                                "temperature": min(s.temperature, 1.0), "top_p": s.top_p}
        if req.system_prompt():
            body["system"] = req.system_prompt()
        if s.stop:
            body["stop_sequences"] = s.stop
        return body

    def parse(self, event: str | None, data: dict[str, Any], state: dict[str, Any]) -> GenerationChunk | None:
        kind = data.get("type", event)
        if kind == "error":
            raise upstream_error(f"provider '{self.cfg.name}' stream error", retryable=True, code="upstream_stream")
        if kind == "message_start":
            state["prompt_tokens"] = data.get("message", {}).get("usage", {}).get("input_tokens", 0)
        elif kind == "content_block_delta":
            text = data.get("delta", {}).get("text", "")
            return GenerationChunk(text, None, state["prompt_tokens"], state["completion_tokens"], self.cfg.model) \
                if text else None
        elif kind == "message_delta":
            state["completion_tokens"] = data.get("usage", {}).get("output_tokens", state["completion_tokens"])
            state["finish"] = "length" if data.get("delta", {}).get("stop_reason") == "max_tokens" else "stop"
        elif kind == "message_stop":
            state["done"] = True
        return None


def make_provider(cfg: ProviderConfig, client: httpx.AsyncClient | None = None) -> Provider:
    return (OpenAIProvider if cfg.kind == "openai" else AnthropicProvider)(cfg, client)
