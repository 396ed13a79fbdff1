"""Issue 14 on the live graph: an oversized body's 413 arrives and the connection stays usable behind
Serve's proxy (#2); provider breakers are on the breaker gauge (#7); /openapi.json documents bodies."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.gateway
HEAD = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def _read(reader) -> tuple[int, dict, dict]:
    status = int(reader.readline().split()[1])
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        raw = b""
        while (size := int(reader.readline().strip(), 16)) > 0:
            raw += reader.read(size)
            reader.readline()
        reader.readline()
    else:
        raw = reader.read(int(headers["content-length"]))
    return status, headers, json.loads(raw)


def test_oversized_bodies_get_a_413_and_the_connection_stays_usable(gateway_url: str) -> None:
    url = urlparse(gateway_url)
    big = json.dumps({"model": "small", "messages": [{"role": "user", "content": "x" * 2_000_000}]}).encode()
    ok = json.dumps({"model": "small", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                     "cache": False}).encode()
    with socket.create_connection((url.hostname, url.port), timeout=120) as conn:
        reader = conn.makefile("rb")
        conn.sendall(f"{HEAD}Content-Length: {len(big)}\r\n\r\n".encode() + big)  # all of it, then read
        status, headers, body = _read(reader)
        assert status == 413 and body["error"]["code"] == "request_too_large"
        assert headers.get("connection") != "close"
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536])
                          for i in range(0, len(big), 65536))
        conn.sendall(f"{HEAD}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n")
        status, _, body = _read(reader)
        assert status == 413 and body["error"]["type"] == "invalid_request_error"
        conn.sendall(f"{HEAD}Content-Length: {len(ok)}\r\n\r\n".encode() + ok)  # the same connection
        status, _, body = _read(reader)
        assert status == 200 and body["object"] == "chat.completion"


def test_provider_and_pool_breakers_are_on_the_gauge(client) -> None:
    client.get("/readyz")  # creates the pool breakers of the answering replica
    text = client.get("/metrics").text
    targets = {line.split('target="', 1)[1].split('"', 1)[0] for line in text.splitlines()
               if line.startswith("llmgw_breaker_state{")}
    assert {"pool:small", "pool:large", "provider:fake-openai"} <= targets, targets


def test_openapi_documents_the_request_bodies(client) -> None:
    doc = client.get("/openapi.json").json()
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionRequest")
    assert "messages" in doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
