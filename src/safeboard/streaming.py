"""A streamed response over stored bytes that always lets go of them: the artifact file
server and the agents' code downloads both send files this way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.types import Receive, Scope, Send

__all__ = ["ClosingChunks", "ClosingStreamResponse"]


class ClosingChunks(Protocol):
    """Chunks read from storage; ``close()`` frees what they hold, read or not."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class ClosingStreamResponse(StreamingResponse):
    """Streams the chunks, read in a worker thread, and closes them however the response
    ends: sent, the client gone before the body began, or cancelled (no file descriptor
    outlives it)."""

    def __init__(self, chunks: ClosingChunks, **kwargs: Any) -> None:
        self.chunks = chunks

        async def body() -> AsyncIterator[bytes]:
            async for chunk in iterate_in_threadpool(iter(chunks)):
                yield chunk

        super().__init__(body(), **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.chunks.close()
