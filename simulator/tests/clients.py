"""What the inference tests share: the real clients pointed at a node, raw bytes."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import ollama
import openai

from simulator.ollama import SimulatedNode

CHAT = "llama3.2:1b"
EMBED = "all-minilm:latest"
HELLO = [{"role": "user", "content": "Say hello."}]


def native(node: SimulatedNode) -> ollama.Client:
    """Return ollama-python's client for ``node`` (no proxy from the environment)."""
    return ollama.Client(host=node.url, trust_env=False, timeout=10)


def compatible(node: SimulatedNode) -> openai.OpenAI:
    """Return the openai SDK's client for ``node``'s /v1, with no retries."""
    return openai.OpenAI(
        base_url=node.url + "/v1",
        api_key="simulated",
        max_retries=0,
        timeout=10,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )


def async_compatible(node: SimulatedNode) -> openai.AsyncOpenAI:
    """Return the openai SDK's async client for ``node``'s /v1, with no retries."""
    return openai.AsyncOpenAI(
        base_url=node.url + "/v1",
        api_key="simulated",
        max_retries=0,
        timeout=10,
        http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
    )


def wait_until(condition: Callable[[], Any], timeout: float = 3.0) -> None:
    """Poll ``condition`` (the node runs on another thread) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the node never got there"
        time.sleep(0.005)


async def until(condition: Callable[[], Any], timeout: float = 3.0) -> None:
    """Poll ``condition`` without blocking the loop until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the node never got there"
        await asyncio.sleep(0.005)


def post_raw(node: SimulatedNode, path: str, body: dict[str, Any]) -> bytes:
    """Send one request on a fresh socket; return every byte until the node closes."""
    payload = json.dumps(body).encode()
    with socket.create_connection((node.host, node.port), timeout=5) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {node.address}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def dechunk(raw: bytes) -> tuple[bytes, list[bytes]]:
    """Return the head and the chunks of a chunked HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    chunks = []
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(body[:size])
        body = body[size + 2 :]
    return head, chunks
