"""An event stream read as it arrives, straight over ASGI (httpx's ASGITransport would wait
for the whole body, and a live stream has no end until something ends it)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI


class OpenStream:
    """``GET path`` on ``app``: the status, the body so far, and when it ended."""

    def __init__(
        self,
        app: FastAPI,
        base_url: str,
        path: str,
        headers: dict[str, str],
        *,
        hang_up_at_once: bool = False,
    ) -> None:
        self.app = app
        self.path = path
        self.headers = [(b"host", urlsplit(base_url).netloc.encode())]
        self.headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.status: int | None = None
        self.body = ""
        self.ended_at: float | None = None
        self._changed = asyncio.Event()
        self._gone = asyncio.Event()  # the client hangs up
        if hang_up_at_once:  # before the response has begun
            self._gone.set()
        self._sent_request = False
        self._task: asyncio.Task[None] | None = None

    async def open(self, timeout: float = 10) -> OpenStream:
        """Start the request; return once the stream said ``connected`` or was refused."""
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "GET", "scheme": "http", "path": self.path,
            "raw_path": self.path.encode(), "query_string": b"", "root_path": "",
            "headers": self.headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
        }  # fmt: skip
        self._task = asyncio.get_running_loop().create_task(
            self.app(scope, self._receive, self._send)
        )
        task = self._task
        await self.wait(
            lambda: ": connected" in self.body or self.ended_at is not None or task.done(),
            timeout,
        )
        return self

    async def _receive(self) -> dict[str, Any]:
        if not self._sent_request:
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self._gone.is_set():
                await asyncio.sleep(0.01)  # sending to a client that has left takes a while
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"").decode()
            if not message.get("more_body", False):
                self.ended_at = time.monotonic()
        self._changed.set()

    async def wait(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.05))
            except TimeoutError:
                continue
        return True

    async def ended_within(self, seconds: float) -> bool:
        return await self.wait(lambda: self.ended_at is not None, seconds)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for block in self.body.split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in lines:
                found.append((lines["event"], json.loads(lines["data"])))
        return found

    def json(self) -> Any:
        return json.loads(self.body)

    async def close(self) -> None:
        self._gone.set()
        if self._task is not None:
            task, self._task = self._task, None
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)

    def ids(self) -> list[tuple[int | None, str]]:
        """Each event's ``id:`` (None when it has none) and kind, in order."""
        found: list[tuple[int | None, str]] = []
        for block in self.body.split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in lines:
                found.append((int(lines["id"]) if "id" in lines else None, lines["event"]))
        return found
