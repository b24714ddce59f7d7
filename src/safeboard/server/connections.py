"""Connection admission: idle and slow clients cannot take the server from others.

uvicorn arms its keep-alive timeout only after a first response, and asyncio gives a TLS
handshake 60 seconds, so a socket that sends nothing (or one header line every few
seconds) stays open, and about a thousand of them exhaust the process's file descriptors.
Here every accepted connection passes a gate first:

- it is counted per client (an IPv4 address, an IPv6 /64) and in total, and turned away at
  once (the socket is closed, nothing is read) beyond either bound; addresses of trusted
  reverse proxies count only towards the total;
- its TLS handshake runs here, with our ``SSLContext``, before uvicorn sees the connection
  (not on the plain Unix socket of a TLS server, ``plain.sock`` in the 0700 data
  directory: its requests are served as HTTPS ones, ``scheme`` "https");
- the handshake and the complete head of the first request must arrive within
  ``request_head_timeout`` seconds, and the head of each following request on a kept-alive
  connection within as long after the previous response; otherwise the connection is
  aborted. A request whose head arrived is never cut short by this deadline.

The total bound stays below the descriptor limit, whose soft value is raised to the hard one
at start (:func:`raise_open_files_limit`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import ssl
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

__all__ = [
    "Admission",
    "ConnectionLimits",
    "client_key",
    "gated_protocol",
    "raise_open_files_limit",
]

logger = logging.getLogger("safeboard.connections")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Descriptors kept free for what is not a client connection: the database, artifact
# files, logs, the TLS material. At least this many, or an eighth of the limit.
_RESERVED_FILES = 128
_NO_LIMIT_CAP = 1 << 20  # when the hard limit is "unlimited", raise the soft one this far
_REFUSAL_LOG_SECONDS = 60.0


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _NO_LIMIT_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # a kernel cap below the hard limit
            logger.warning("cannot raise the open-files limit to %d (%s)", target, exc)
        else:
            soft = target
    return _NO_LIMIT_CAP if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout: float
    total: int
    per_client: int
    exempt: tuple[Network, ...] = ()

    @classmethod
    def within(
        cls,
        open_files: int,
        *,
        head_timeout: float,
        total: int,
        per_client: int,
        exempt: Sequence[Network] = (),
    ) -> ConnectionLimits:
        """The configured bounds, the total kept below ``open_files``."""
        room = max(16, open_files - max(_RESERVED_FILES, open_files // 8))
        total = min(total, room)
        return cls(head_timeout, total, min(per_client, total), tuple(exempt))


def client_key(host: str) -> str:
    """Whose budget a connection from ``host`` counts against: the address, or its /64."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # not an IP address (a Unix socket's path): one budget per name
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Admission:
    """The book of open connections, per client and in total (one event loop, no locks)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._open: Counter[str] = Counter()
        self._total = 0
        self._refused = 0
        self._refusal_logged_at = float("-inf")

    def admit(self, host: str | None, now: float) -> Ticket | None:
        """A ticket for a new connection from ``host``, or None when it must be turned away."""
        key = client_key(host) if host else ""
        capped = host is not None and not self._exempt(host)
        if self._total >= self.limits.total or (
            capped and self._open[key] >= self.limits.per_client
        ):
            self._note_refusal(key, now)
            return None
        self._total += 1
        if capped:
            self._open[key] += 1
        return Ticket(self, key if capped else None)

    @property
    def total(self) -> int:
        return self._total

    def _release(self, key: str | None) -> None:
        self._total -= 1
        if key is not None:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]

    def _exempt(self, host: str) -> bool:
        if not self.limits.exempt:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # an IPv4 proxy on a dual-stack bind
        return any(address in network for network in self.limits.exempt)

    def _note_refusal(self, key: str, now: float) -> None:
        """One warning a minute at most, however hard the server is flooded."""
        self._refused += 1
        if now - self._refusal_logged_at >= _REFUSAL_LOG_SECONDS:
            logger.warning(
                "turned away %d connection(s) over the limits (%d per client, %d in all); "
                "latest from %s",
                self._refused,
                self.limits.per_client,
                self.limits.total,
                key or "an unknown address",
            )
            self._refused = 0
            self._refusal_logged_at = now


class Ticket:
    """One admitted connection's place in the book; released exactly once."""

    __slots__ = ("_admission", "_key", "_released")

    def __init__(self, admission: Admission, key: str | None) -> None:
        self._admission = admission
        self._key = key
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission._release(self._key)


class _ReadBuffer(threading.local):
    """The bytes a connection reads land here, one buffer per event loop's thread.

    A plain ``asyncio.Protocol`` gets each read as new bytes: asyncio allocates 256 KiB for
    every socket read (and ``ssl.SSLObject.read`` for every TLS read) and shrinks it to what
    came. glibc serves allocations that large with a fresh ``mmap`` each time (the shrunk
    block never raises its threshold), so every request cost two ``mmap``, two ``munmap`` and
    an ``mremap``, a quarter of a small request's time on the event loop. Read into this one
    buffer instead (``asyncio.BufferedProtocol``), the bytes are copied out before the next
    read of any connection: the loop runs one callback at a time."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_READ_BUFFER_BYTES))


_READ_BUFFER_BYTES = 256 * 1024  # asyncio's own read size
_read_buffer = _ReadBuffer()


class _HeadTimedH11(H11Protocol, asyncio.BufferedProtocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on each request head, reading into the
    thread's :class:`_ReadBuffer`."""

    ticket: Ticket | None = None
    head_timeout: float = 0.0
    _head_timer: asyncio.TimerHandle | None = None

    def start(self, ticket: Ticket, head_timeout: float, deadline: float) -> None:
        """Called before ``connection_made``: the ticket to release and the first deadline."""
        self.ticket = ticket
        self.head_timeout = head_timeout
        self._arm(deadline)

    def get_buffer(self, sizehint: int) -> memoryview:
        del sizehint  # asyncio's hint is its own read size: the buffer's
        return _read_buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_read_buffer.view[:nbytes]))  # out before the next read

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._disarm()
        if self.ticket is not None:
            self.ticket.release()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.loop.time() + self.head_timeout)

    def _arm(self, deadline: float) -> None:
        self._disarm()
        self._head_timer = self.loop.call_at(deadline, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        waiting = self.cycle is None or self.cycle.response_complete
        if not waiting or self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size():  # a response is still on its way out
            self._arm(self.loop.time() + self.head_timeout)
            return
        logger.debug("closed a connection from %s: no complete request head", self.client)
        self.transport.abort()


class _Gate(asyncio.Protocol):
    """The listening socket's protocol: admit, shake hands (TLS), hand over to HTTP/1.1."""

    admission: Admission
    ssl_context: ssl.SSLContext | None
    plain: frozenset[object] = frozenset()  # the bound names of sockets served without TLS

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._http_args = (config, server_state, app_state)
        self._loop = _loop or asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._ticket: Ticket | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Task[None] | None = None
        self._early: list[bytes] = []  # read after the handshake, before the hand-over
        self._eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101  (a stream server)
        peer = transport.get_extra_info("peername")
        now = self._loop.time()
        # An IP peer is (host, port, ...); a Unix socket's is a path (or "") and counts
        # towards the total only.
        host = str(peer[0]) if isinstance(peer, tuple) and peer else None
        ticket = self.admission.admit(host, now)
        if ticket is None:
            transport.abort()
            return
        self._transport, self._ticket = transport, ticket
        head_timeout = self.admission.limits.head_timeout
        self._deadline = now + head_timeout
        if self.ssl_context is None or transport.get_extra_info("sockname") in self.plain:
            self._hand_over(transport)
            return
        self._timer = self._loop.call_at(self._deadline, transport.abort)
        self._handshake = self._loop.create_task(self._shake_hands(transport, head_timeout))

    async def _shake_hands(self, transport: asyncio.Transport, timeout: float) -> None:
        assert self.ssl_context is not None  # noqa: S101  (only started with one)
        try:
            wrapped = await self._loop.start_tls(
                transport, self, self.ssl_context, server_side=True, ssl_handshake_timeout=timeout
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            logger.debug("TLS handshake failed: %s", exc)
            transport.abort()
            self._end()
            return
        if wrapped is None or wrapped.is_closing():
            self._end()
            return
        self._hand_over(wrapped)

    def _hand_over(self, transport: asyncio.Transport) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ticket, self._ticket = self._ticket, None
        assert ticket is not None  # noqa: S101  (admitted above)
        config, server_state, app_state = self._http_args
        http = _HeadTimedH11(config, server_state, app_state, _loop=self._loop)
        http.start(ticket, self.admission.limits.head_timeout, self._deadline)
        transport.set_protocol(http)
        http.connection_made(transport)
        if self.ssl_context is not None:  # a TLS server's plain socket: as HTTPS to the app
            http.scheme = "https"
        early, self._early = b"".join(self._early), []
        if early:
            http.data_received(early)
        if self._eof:
            http.eof_received()

    def data_received(self, data: bytes) -> None:
        self._early.append(data)

    def eof_received(self) -> bool | None:
        self._eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        del exc  # before the hand-over there is nobody to tell
        if self._handshake is not None and not self._handshake.done():
            self._handshake.cancel()
        self._end()

    def _end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ticket is not None:
            self._ticket.release()
            self._ticket = None


def gated_protocol(
    admission: Admission, ssl_context: ssl.SSLContext | None, *, plain: Iterable[object] = ()
) -> type[asyncio.Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``. ``plain``: the bound names
    (``getsockname()``) of Unix sockets served without TLS, whatever ``ssl_context``."""

    class GatedHTTP(_Gate):
        pass

    GatedHTTP.admission = admission
    GatedHTTP.ssl_context = ssl_context
    GatedHTTP.plain = frozenset(plain)
    return GatedHTTP
