"""The import socket's framing, spoken by the command and the server (standard library
only: the command must start fast, P7).

One connection is one import:

1. the command sends the request, a message ``{"version": VERSION, "api_key", "project",
   "runs": [{"name", "dir" (absolute, resolved), "files": [{"name"}]}]}``, then the
   descriptors of the event files it opened, in the request's order, in groups of at most
   :data:`FDS_PER_SEND` (``SCM_RIGHTS``, one byte of data each);
2. the server answers with messages until ``done`` or ``error``:
   ``{"runs": {name: run_id}}`` once the runs are made (the command answers
   ``{"ledgers": {run_id: {file: [cuts]}}}``: where earlier imports cut each file);
   ``{"say": line}``, a line for the user;
   ``{"cut": [run_id, file, offset]}`` before a batch that ends at a new cut (the command
   records it in its ledger and answers ``{"ok": true}``: recorded before it is sent, as
   over HTTP);
   ``{"done": [{"name", "run_id", "counts"}]}``; ``{"error": {"code", "message"}}``
   (codes ``busy`` and ``unsupported`` before any run is made: the command imports over
   HTTP instead).

A message is a 4-byte big-endian length and that many bytes of UTF-8 JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
from typing import Any

__all__ = [
    "FDS_PER_SEND", "IMPORT_SOCKET", "MAX_FILES", "MAX_MESSAGE", "VERSION", "Gone",
    "ProtocolError", "close_all", "encode", "receive", "receive_fds", "send", "send_fds",
]  # fmt: skip

IMPORT_SOCKET = "import.sock"  # in the server's data directory, beside plain.sock
VERSION = 1
MAX_MESSAGE = 4 << 20  # bytes of one message: a request naming thousands of files fits
MAX_FILES = 4096  # event files in one import; more go over HTTP
FDS_PER_SEND = 200  # under the kernel's 253 descriptors per message (SCM_MAX_FD)
_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """The other side broke the framing."""


class Gone(Exception):
    """The other side went away, or did not answer in time (the socket failed)."""


def encode(message: dict[str, Any]) -> bytes:
    """A message as it is sent; ProtocolError when it is longer than a message may be."""
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"a message of {len(data)} bytes (at most {MAX_MESSAGE})")
    return _LENGTH.pack(len(data)) + data


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    data = encode(message)
    try:
        sock.sendall(data)
    except OSError as exc:  # (a timeout too)
        raise Gone(str(exc) or type(exc).__name__) from None


def receive(sock: socket.socket, deadline: float | None = None) -> dict[str, Any]:
    """The next message, a JSON object; with ``deadline`` (``time.monotonic()``) all of it
    by then, however slowly it comes."""
    (length,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size, deadline))
    if length > MAX_MESSAGE:
        raise ProtocolError(f"a message of {length} bytes (at most {MAX_MESSAGE})")
    try:
        message = json.loads(_exactly(sock, length, deadline))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("a message that is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message that is not a JSON object")
    return message


def _exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    """``size`` bytes, read without taking any that carry descriptors (those are read by
    :func:`receive_fds` alone: a plain read of them would close the descriptors)."""
    parts, got = [], 0
    while got < size:
        _until(sock, deadline)
        try:
            part = sock.recv(min(size - got, 1 << 20))
        except OSError as exc:
            raise Gone(str(exc) or type(exc).__name__) from None
        if not part:
            raise Gone("the other side closed the connection")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _until(sock: socket.socket, deadline: float | None) -> None:
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Gone("too slow")
        sock.settimeout(left)


def send_fds(sock: socket.socket, fds: list[int]) -> None:
    try:
        for first in range(0, len(fds), FDS_PER_SEND):
            socket.send_fds(sock, [b"F"], fds[first : first + FDS_PER_SEND])
    except OSError as exc:
        raise Gone(str(exc) or type(exc).__name__) from None


def receive_fds(sock: socket.socket, count: int, deadline: float | None = None) -> list[int]:
    """``count`` descriptors sent by :func:`send_fds`; on any failure those received are
    closed before ProtocolError or Gone is raised."""
    fds: list[int] = []
    try:
        while len(fds) < count:
            _until(sock, deadline)
            fds += _some_fds(sock, min(FDS_PER_SEND, count - len(fds)), count)
    except BaseException:
        close_all(fds)
        raise
    return fds


def _some_fds(sock: socket.socket, want: int, count: int) -> list[int]:
    try:
        data, got, flags, _ = socket.recv_fds(sock, 1, want)
    except OSError as exc:
        raise Gone(str(exc) or type(exc).__name__) from None
    if flags & socket.MSG_CTRUNC or len(got) > want or data != b"F" or not got:
        close_all(got)
        raise ProtocolError(f"{count} descriptors announced, not sent as announced")
    return got


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
