"""An injected HTTP transport for the Anthropic SDK that replays recorded API
responses and keeps every request it saw. The SDK itself runs for real."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx2

RECORDED = Path(__file__).parent / "recorded"


class Replay:
    """Answers each request with the next scripted reply: (status, file) or an exception."""

    def __init__(self, replies: Iterable[tuple[int, str] | Exception]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content))
        if not self.replies:
            raise AssertionError("more requests than scripted replies")
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        status, name = reply
        kind = "text/event-stream" if name.endswith(".sse") else "application/json"  # recorded streams
        headers = {"content-type": kind, "request-id": f"req_{len(self.requests)}"}
        if status in (429, 529):
            headers["retry-after-ms"] = "5"
        return httpx2.Response(status, content=(RECORDED / name).read_bytes(), headers=headers)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler))
