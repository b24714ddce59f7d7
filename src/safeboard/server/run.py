"""``safeboard server``: prepare the data directory, secrets, database and TLS, then serve."""

from __future__ import annotations

import gc
import logging.config
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from safeboard import __version__, heap
from safeboard.api.app import create_app
from safeboard.datadir import LOCAL_SOCKET, PLAIN_SOCKET, SocketAddress, ensure_data_dir
from safeboard.errors import ConfigError
from safeboard.importsock.protocol import IMPORT_SOCKET
from safeboard.logconfig import log_config
from safeboard.secret_store import ensure_secrets
from safeboard.server.bootstrap import Bootstrapped, advertised_url, bootstrap, local_url
from safeboard.server.certificates import TlsMaterial, prepare_tls, trust_anchor_der
from safeboard.server.connections import (
    Admission,
    ConnectionLimits,
    gated_protocol,
    raise_open_files_limit,
)
from safeboard.server.imports import ImportListener, bind_import_socket
from safeboard.server.lock import ServerLock
from safeboard.server.origins import (
    Origins,
    SameOrigin,
    TensorboardListener,
    open_tensorboard_listener,
    same_origin_tensorboard,
)
from safeboard.server.tls import server_ssl_context
from safeboard.server.undo import StartRecord
from safeboard.services import Services, services_of
from safeboard.settings import (
    Settings,
    is_wildcard_host,
    load_settings,
    mask_url_password,
)
from safeboard.storage import open_database
from safeboard.storage.faults import is_disk_full

__all__ = ["Prepared", "bind_local_socket", "bind_socket", "disk_full_said", "prepare", "serve"]


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    tls: TlsMaterial | None
    lock: ServerLock | None = None  # the data directory's, held until the process ends
    made: StartRecord | None = None  # what existed before the start, to undo a failed one


def prepare(data_dir: Path, **overrides: object) -> Prepared:
    """Everything a start needs, in order; each step fails with a ConfigError naming the
    fix, and a failure takes back what the start made (``StartRecord``)."""
    data_dir = ensure_data_dir(data_dir)
    with disk_full_said(data_dir):
        # Before anything in the directory changes: a second server on it stops here.
        lock = ServerLock.acquire(data_dir)
    made = StartRecord(data_dir)  # under the lock: what is new from here on is this start's
    with _undone_on_failure(made), disk_full_said(data_dir):
        ensure_secrets(data_dir)
        settings = load_settings(data_dir, **overrides)
        made.watch(settings.artifact_dir)
        if (database := _sqlite_file(settings.database_url)) is not None:
            made.watch_database(database)
        lock.record(local_url(settings))
        material = prepare_tls(settings) if settings.tls_on else None
    return Prepared(settings, material, lock, made)


@contextmanager
def _undone_on_failure(made: StartRecord | None) -> Iterator[None]:
    try:
        yield
    except BaseException:
        if made is not None:
            made.undo()
        raise


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL (None for another database or one in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@contextmanager
def disk_full_said(data_dir: Path, database: str | None = None) -> Iterator[None]:
    """A start on a full disk says so, names the path and the fix (not an internal error):
    any write of the start (secrets, lock, certificates, the database, the artifact store)."""
    try:
        yield
    except (OSError, SQLAlchemyError) as exc:
        if not is_disk_full(exc, data_dir):
            raise
        reason = exc.strerror if isinstance(exc, OSError) else str(getattr(exc, "orig", exc))
        if isinstance(exc, OSError) and exc.filename:
            where = f"{exc.filename}"
        elif database is not None and isinstance(exc, SQLAlchemyError):
            where = f"the database {mask_url_password(database)}"
        else:
            where = f"the data directory {data_dir}"
        raise ConfigError(
            f"the disk is full: cannot write {where} ({reason}); free space on that "
            "disk, or give the server room elsewhere (--data-dir, --database-url, the "
            "setting artifacts.path)"
        ) from None


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving, so a taken port is a one-line error and not a log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: no Nagle + delayed-ACK stall of 40 ms between the
    # headers and the body of a response (the trap uvicorn issue #3149 describes).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if family == socket.AF_INET6 and host == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # also IPv4, like 0.0.0.0
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses it or pick "
            "another --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The settings' connection bounds, below this process's (raised) open-files limit."""
    server = settings.server
    return ConnectionLimits.within(
        raise_open_files_limit(),
        head_timeout=server.request_head_timeout,
        total=server.max_connections,
        per_client=server.max_connections_per_client,
        exempt=server.behind_proxy,
    )


def bind_local_socket(data_dir: Path) -> socket.socket:
    """The Unix socket through which local clients reach this server (``server.sock``).

    It lives in the 0700 data directory, so no other OS user can bind it or connect to it:
    a process that takes the TCP port while the server is down receives nothing from
    clients that use the discovery file. A socket left by a crash is replaced; one that
    still answers belongs to a running server of this directory, and the start stops.
    """
    path = data_dir / LOCAL_SOCKET
    address = SocketAddress(path)
    if _answers(path, address.address):
        address.close()
        raise ConfigError(
            f"another safeboard server is running with {data_dir}: stop it, or give this "
            "one another --data-dir"
        )
    return _bind_unix(path, address)


def bind_plain_socket(data_dir: Path) -> socket.socket:
    """A TLS server's second Unix socket, ``plain.sock``, for plain HTTP (datadir.py says
    why). Bound after :func:`bind_local_socket`, which stops a second server of the
    directory: one left by a crash is replaced."""
    path = data_dir / PLAIN_SOCKET
    return _bind_unix(path, SocketAddress(path))


def _bind_unix(path: Path, address: SocketAddress) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.unlink(missing_ok=True)
        sock.bind(address.address)
        path.chmod(0o600)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    finally:
        address.close()
    sock.set_inheritable(True)
    return sock


def _answers(path: Path, address: str) -> bool:
    """True when a server listens on the Unix socket at ``path``."""
    if not path.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(address) == 0


def banner(prepared: Prepared) -> list[str]:
    settings, material = prepared.settings, prepared.tls
    lines = [f"safeboard {__version__} listening on {advertised_url(settings, public=False)}"]
    if settings.server.public_url:
        lines.append(f"  public address {settings.server.public_url}")
    if is_wildcard_host(settings.server.host):
        lines.append(f"  bound to all interfaces ({settings.server.host}), port {settings.port}")
    if material is not None:
        origin = "generated" if material.generated else "given"
        lines.append(f"  TLS certificate ({origin}, {settings.tls.profile} profile)")
        renewal = _renewal_lines(material) if material.generated else []
        # The CA first: its fingerprint is what teammates compare at `safeboard login`.
        lines += renewal[1:]
        lines.append(f"    fingerprint {material.fingerprint}")
        lines.append(
            f"    expires {material.not_after:%Y-%m-%d}; names {', '.join(material.names)}"
        )
        lines += renewal[:1]
        if material.ca_path is not None:
            lines.append(f"    clients trust it with --ca-cert {material.ca_path}")
    lines.append(f"  data directory {settings.data_dir}")
    lines.append(f"  database {mask_url_password(settings.database_url)}")
    return lines


def _renewal_lines(material: TlsMaterial) -> list[str]:
    """Whether the leaf was issued at this start and why; whether pinned clients notice."""
    issued = f"issued at this start ({material.renewal})" if material.renewed else "reused"
    ca = f"    CA {material.ca_fingerprint} "
    if material.ca_status == "unchanged":
        ca += "(unchanged: clients that pinned it notice no renewal)"
    elif material.ca_status == "new: first start":
        ca += "(new: first start; `safeboard login URL` shows and pins it)"
    else:
        ca += f"({material.ca_status}; clients that pinned the old CA must log in again)"
    return [f"    server certificate {issued}", ca]


class _Server(uvicorn.Server):
    """uvicorn's server, but a stop first ends every request that waits: the open event
    streams (``closing``), the agents' lease long-polls (204: nothing to run) and the
    task-log followers' long-polls. It then waits only for the requests that end by
    themselves, not for the timeout (whose expiry cancels them with a traceback)."""

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self.services = services

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.services.events.close_streams()
        self.services.task_wakeup.release()
        self.services.task_logs.release()
        await super().shutdown(sockets)


def serve(
    prepared: Prepared,
    echo: Callable[[str], None] = print,
    on_started: Callable[[Services], None] | None = None,
) -> None:
    """Serve until stopped. ``on_started``: called once the services are bootstrapped and
    the listeners bound, before serving (``safeboard tensorboard`` opens its instance)."""
    settings, material = prepared.settings, prepared.tls
    heap.configure()  # big blocks freed go back to the system (safeboard/heap.py)
    logging.config.dictConfig(log_config(settings.server.log_level))
    with _undone_on_failure(prepared.made):  # until it serves, a failed start takes back
        sock = bind_socket(settings.server.host, settings.port)
        local = bind_local_socket(settings.data_dir)
        plain = bind_plain_socket(settings.data_dir) if material else None
        imports = bind_import_socket(settings.data_dir)
        # Before any thread starts: the migrations run in a forked child (Alembic stays out).
        engine = open_database(
            settings.database_url,
            in_child=True,
            busy_timeout_ms=settings.database.sqlite_busy_timeout_ms,
        )
        try:
            with disk_full_said(settings.data_dir, settings.database_url):
                names = material.names if material else ()
                anchor = trust_anchor_der(material) if material else None
                app = create_app(
                    settings, engine=engine, certificate_names=names, trust_anchor=anchor
                )
                services = services_of(app)
                socket_path = settings.data_dir / LOCAL_SOCKET
                started = bootstrap(
                    services, material, local_socket=socket_path,
                    plain_socket=settings.data_dir / PLAIN_SOCKET if plain is not None else None,
                    import_socket=settings.data_dir / IMPORT_SOCKET,
                )  # fmt: skip
            board = open_tensorboard_listener(settings, bind_socket)
        except BaseException:
            imports.close()
            engine.dispose()  # its files closed before they are taken back
            raise
    sqlite_file = engine.url.database if engine.dialect.name == "sqlite" else None
    releaser = heap.Releaser([Path(sqlite_file)] if sqlite_file else [])
    unix = [local] if plain is None else [local, plain]
    served, sockets = _origins(
        app, services, board, [sock, *unix], secure=material is not None, settings=settings
    )
    config = _uvicorn_config(served, settings, material, plain)
    for line in [*banner(prepared), *_started_lines(started, board, services)]:
        echo(line)
    importer = ImportListener(imports, services, settings.data_dir).start()
    if on_started is not None:
        on_started(services)
    releaser.start()
    # What the start made (modules, the app, its services) lives as long as the process:
    # out of the collector's sight, the interpreter's last collection at exit skips it
    # (0.7 CPU s of a Ctrl-C's 0.9 measured: docs/benchmarks.md), and so do full collections
    # meanwhile.
    gc.freeze()
    # uvicorn re-raises the SIGTERM it stopped on once it is done, with the handler found
    # before it: the default one would kill the process before the cleanup below.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        _Server(config, services).run(sockets=sockets)
    except _Terminated:
        pass  # a stop asked for: exit status 0, like Ctrl-C
    finally:
        signal.signal(signal.SIGTERM, previous)
        releaser.stop()
        importer.close()
        services.tensorboards.close()
        (settings.data_dir / LOCAL_SOCKET).unlink(missing_ok=True)
        (settings.data_dir / PLAIN_SOCKET).unlink(missing_ok=True)


def _started_lines(
    started: Bootstrapped, board: TensorboardListener | None, services: Services
) -> list[str]:
    if started.login_link:
        lines = [f"  sign in as {started.admin}: {started.login_link}",
                 "    (single use, valid 15 minutes; a restart makes a new one)"]  # fmt: skip
    else:
        lines = [f"  no sign-in link: the account {started.admin} is disabled or not an admin"]
    if board is not None:
        lines.append(
            f"  TensorBoard's origin {board.origin} (`safeboard tensorboard --logdir DIR`)"
        )
    elif services.tensorboards.origin is not None:
        lines.append(
            f"  TensorBoard under {services.tensorboards.origin}/tb/ (tensorboard.same_origin)"
        )
    return lines


def _uvicorn_config(
    served: Any, settings: Settings, material: TlsMaterial | None, plain: socket.socket | None
) -> uvicorn.Config:
    return uvicorn.Config(
        served,
        # Admission, the TLS handshake (our SSLContext) and head deadlines run in the gate,
        # before uvicorn's HTTP/1.1 protocol sees a connection; uvicorn itself gets no ssl.
        http=gated_protocol(
            Admission(connection_limits(settings)),
            server_ssl_context(material, settings.tls.profile) if material else None,
            plain=[] if plain is None else [plain.getsockname()],
        ),
        # No WebSocket routes: an Upgrade request must stay with the gate's HTTP protocol,
        # which gives its connection's place back (uvicorn's ws protocol would not).
        ws="none",
        log_config=None,  # configured above, with the redacting filter
        access_log=False,  # safeboard's own access log redacts query strings
        proxy_headers=False,  # create_app trusts only --behind-proxy addresses
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def _origins(
    app: Any,
    services: Services,
    board: TensorboardListener | None,
    sockets: list[socket.socket],
    *,
    secure: bool,
    settings: Settings,
) -> tuple[Any, list[socket.socket]]:
    """The application to serve and its sockets: with TensorBoard's listener, its own
    origin on another port, the same TLS (safeboard/server/origins.py); in the
    same-origin mode, TensorBoard under /tb/ of the one listener."""
    if board is None:
        if same_origin_tensorboard(settings):
            public = advertised_url(settings)  # behind a proxy: its public URL
            services.tensorboards.listening(public, same_origin=True)
            secure = public.startswith("https://")
            tensorboard = services.tensorboards.application(secure=secure, same_origin=True)
            return SameOrigin(app, tensorboard), sockets
        return app, sockets
    services.tensorboards.listening(board.origin)
    tensorboard = services.tensorboards.application(secure=secure)
    return Origins(app, tensorboard, board.port), [*sockets, board.sock]


class _Terminated(Exception):
    """SIGTERM after (or before) uvicorn's own handling of it."""


def _terminated(_sig: int, _frame: object) -> None:
    raise _Terminated
