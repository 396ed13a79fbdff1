"""External providers over their real wire formats (OpenAI chat completions, Anthropic messages),
streamed with httpx and translated to GenerationChunk. Keys are read from the environment at call
time and never appear in errors or logs.

Tools, tool history, response_format and logprobs travel in each provider's own format: OpenAI's as
is; Anthropic's as ``tools`` / ``tool_choice`` / ``tool_use`` / ``tool_result`` blocks, and a
response_format as a forced tool whose input is the JSON answer (streamed back as text).
``capabilities`` says what a provider honours; the chain skips one that lacks what a request needs."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from app.errors import UpstreamError, upstream_error
from app.generation import GenerationChunk, GenerationRequest
from app.resilience.provider_wire import anthropic_messages, anthropic_tools, json_tool_name, openai_messages
from app.resilience.settings import ProviderConfig

_FINISH = {"length": "length", "max_tokens": "length", "tool_calls": "tool_calls", "tool_use": "tool_calls"}


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class Provider:
    """Base: HTTP + SSE + error mapping. Subclasses translate the request and the events."""

    path = ""
    capabilities: frozenset[str] = frozenset()

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
    capabilities = frozenset({"tools", "response_format", "logprobs", "logit_bias"})

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def body(self, req: GenerationRequest) -> dict[str, Any]:
        s = req.sampling
        messages = openai_messages(req.messages or [{"role": "user", "content": req.prompt or ""}])
        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages, "stream": True,
                                "stream_options": {"include_usage": True},
                                "max_tokens": s.max_tokens or self.cfg.max_tokens_default,
                                "temperature": s.temperature, "top_p": s.top_p}
        if s.stop:
            body["stop"] = s.stop
        if s.seed is not None:
            body["seed"] = s.seed
        if s.presence_penalty:
            body["presence_penalty"] = s.presence_penalty
        if s.frequency_penalty:
            body["frequency_penalty"] = s.frequency_penalty
        if req.tools:
            body["tools"] = req.tools
            body["tool_choice"] = req.tool_choice or "auto"
            if req.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = req.parallel_tool_calls
        if s.structured is not None:
            body["response_format"] = s.structured
        if s.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = s.logprobs
        if s.logit_bias:
            body["logit_bias"] = s.logit_bias
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
                state["finish"] = _FINISH.get(choice["finish_reason"], "stop")
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            calls = delta.get("tool_calls") or None
            logprobs = (choice.get("logprobs") or {}).get("content") or None
            if text or calls or logprobs:
                return GenerationChunk(text, None, state["prompt_tokens"], state["completion_tokens"], self.cfg.model,
                                       calls, logprobs)
        return None


class AnthropicProvider(Provider):
    path = "/v1/messages"
    capabilities = frozenset({"tools", "response_format"})

    def headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}

    def body(self, req: GenerationRequest) -> dict[str, Any]:
        s = req.sampling
        messages = anthropic_messages(req.messages or [{"role": "user", "content": req.prompt or ""}])
        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages, "stream": True,
                                "max_tokens": s.max_tokens or self.cfg.max_tokens_default,
                                "temperature": min(s.temperature, 1.0), "top_p": s.top_p}
        if req.system_prompt():
            body["system"] = req.system_prompt()
        if s.stop:
            body["stop_sequences"] = s.stop
        tools, choice = anthropic_tools(req)
        if tools:
            body["tools"], body["tool_choice"] = tools, choice
        return body

    def parse(self, event: str | None, data: dict[str, Any], state: dict[str, Any]) -> GenerationChunk | None:
        kind = data.get("type", event)
        if kind == "error":
            raise upstream_error(f"provider '{self.cfg.name}' stream error", retryable=True, code="upstream_stream")
        if kind == "message_start":
            state["prompt_tokens"] = data.get("message", {}).get("usage", {}).get("input_tokens", 0)
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                if block.get("name") == json_tool_name():  # the response_format tool: its input is the answer
                    state["json_block"] = data.get("index")
                    return None
                index = state["tool_index"] = state.get("tool_index", -1) + 1
                call = {"index": index, "id": block.get("id", ""), "type": "function",
                        "function": {"name": block.get("name", ""), "arguments": ""}}
                return self._chunk("", state, [call])
        elif kind == "content_block_delta":
            delta = data.get("delta", {})
            if delta.get("type") == "input_json_delta":
                partial = delta.get("partial_json", "")
                if data.get("index") == state.get("json_block"):
                    return self._chunk(partial, state) if partial else None
                call = {"index": state.get("tool_index", 0), "function": {"arguments": partial}}
                return self._chunk("", state, [call]) if partial else None
            text = delta.get("text", "")
            return self._chunk(text, state) if text else None
        elif kind == "message_delta":
            state["completion_tokens"] = data.get("usage", {}).get("output_tokens", state["completion_tokens"])
            reason = data.get("delta", {}).get("stop_reason")
            state["finish"] = "stop" if state.get("json_block") is not None else _FINISH.get(reason, "stop")
        elif kind == "message_stop":
            state["done"] = True
        return None

    def _chunk(self, text: str, state: dict[str, Any], calls: list[dict[str, Any]] | None = None) -> GenerationChunk:
        return GenerationChunk(text, None, state["prompt_tokens"], state["completion_tokens"], self.cfg.model, calls)


def make_provider(cfg: ProviderConfig, client: httpx.AsyncClient | None = None) -> Provider:
    return (OpenAIProvider if cfg.kind == "openai" else AnthropicProvider)(cfg, client)
