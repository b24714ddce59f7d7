"""The command's side of an import through the local server's import socket.

Used when the key would come from the local server's discovery file anyway (no ``--url``,
no ``SAFEBOARD_URL`` or ``SAFEBOARD_API_KEY``, no stored login) and that server has an
import socket; otherwise, or when the socket does not answer or a file cannot be opened,
the command imports over HTTP as before (``None`` from :func:`import_through_socket`),
where every such problem is said with its fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeboard.datadir import SocketAddress
from safeboard.errors import ConfigError, SafeboardError
from safeboard.importsock import protocol
from safeboard.logdirs import CutLedger, is_event_file, ledger_path
from safeboard.userdirs import API_KEY_ENV, URL_ENV, config_dir, default_data_dir, read_private_json

__all__ = ["ImportAnswer", "LocalServer", "import_through_socket", "local_server"]

DISCOVERY_FILE = "discovery.json"  # written by the server at each start (server/bootstrap.py)
# The server's refusals after which the import goes over HTTP (server/imports.py).
OVER_HTTP = frozenset({"busy", "unsupported"})
ANSWER_SECONDS = 900.0  # for each message of the server (a big file's reading between two)


@dataclass(frozen=True)
class LocalServer:
    socket: Path
    api_key: str = field(repr=False)


@dataclass
class ImportAnswer:
    """One run as the server imported it."""

    name: str
    run_id: str
    counts: dict[str, Any]


def local_server() -> LocalServer | None:
    """The local server's import socket and discovery key, when the command would use
    that key (see the module's docstring)."""
    if os.environ.get(URL_ENV) or os.environ.get(API_KEY_ENV):
        return None
    with contextlib.suppress(OSError):
        if any((config_dir() / "credentials").glob("*.json")):
            return None  # a stored login: the resolver decides which server and key
    try:
        info = read_private_json(default_data_dir() / DISCOVERY_FILE)
    except ConfigError:
        return None  # said by the HTTP path, with its fix
    if info is None:
        return None
    path, key = info.get("import_socket"), info.get("api_key")
    if not isinstance(path, str) or not path or not isinstance(key, str) or not key:
        return None
    return LocalServer(Path(path), key)


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address = SocketAddress(path)
    try:
        sock.connect(address.address)
    except OSError:
        sock.close()
        return None  # not running (a socket left behind), or not ours
    finally:
        address.close()
    return sock


def _open_files(dirs: dict[str, Path]) -> tuple[list[dict[str, Any]], list[int]] | None:
    """The request's runs and the descriptors of their files, opened here (the server
    reads only what this account can); None when one cannot be opened, or there are
    more than one request takes."""
    listed = [
        (name, d, sorted(p for p in d.iterdir() if is_event_file(p))) for name, d in dirs.items()
    ]
    if not 0 < sum(len(files) for _, _, files in listed) <= protocol.MAX_FILES:
        return None
    runs, fds = [], []
    try:
        for name, directory, files in listed:
            for path in files:
                fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            if files:
                runs.append({"name": name, "dir": str(directory.resolve()),
                             "files": [{"name": p.name} for p in files]})  # fmt: skip
    except OSError:
        protocol.close_all(fds)
        return None
    return runs, fds


def import_through_socket(
    server: LocalServer,
    dirs: dict[str, Path],
    project: str,
    *,
    say: Callable[[str], None],
    on_runs: Callable[[dict[str, str]], None] = lambda _: None,
) -> list[ImportAnswer] | None:
    """Import the runs ``dirs`` (by name) into ``project`` through the server's import
    socket; None when it cannot be used here (the command goes over HTTP then).
    ``on_runs``: called with the runs' ids by name once the server has made them. A
    refusal or failure the server answers is raised as SafeboardError."""
    opened = _open_files(dirs)
    if opened is None:
        return None
    runs, fds = opened
    request = {"version": protocol.VERSION, "api_key": server.api_key,
               "project": project, "runs": runs}  # fmt: skip
    try:
        data = protocol.encode(request)
    except protocol.ProtocolError:  # longer than a request may be: HTTP takes it
        protocol.close_all(fds)
        return None
    sock = _connect(server.socket)
    if sock is None:
        protocol.close_all(fds)
        return None
    with sock:
        sock.settimeout(ANSWER_SECONDS)
        try:
            sock.sendall(data)
            protocol.send_fds(sock, fds)
        except (OSError, protocol.Gone):
            pass  # refused before it took everything: its answer says why, if it gave one
        finally:
            protocol.close_all(fds)  # the server holds its own copies now
        return _conversation(sock, say, on_runs)


def _conversation(
    sock: socket.socket, say: Callable[[str], None], on_runs: Callable[[dict[str, str]], None]
) -> list[ImportAnswer] | None:
    """The server's messages until the end; None when it did not take the import and HTTP
    should (it was busy, or does not take such a request, or closed before making runs)."""
    ledgers: dict[str, CutLedger] = {}
    while True:
        try:
            message = protocol.receive(sock)
        except (protocol.Gone, protocol.ProtocolError) as exc:
            if not ledgers:
                return None  # nothing made yet: over HTTP
            raise SafeboardError(f"the server ended the import early ({exc}): run it again "
                                 "(nothing is stored twice)") from None  # fmt: skip
        if "error" in message:
            error = message["error"] if isinstance(message["error"], dict) else {}
            if not ledgers and error.get("code") in OVER_HTTP:
                return None
            raise SafeboardError(str(error.get("message", "the server refused the import")))
        try:
            done = _answer(sock, message, ledgers, say, on_runs)
        except (protocol.Gone, OSError) as exc:
            raise SafeboardError(f"the server ended the import early ({exc}): run it again "
                                 "(nothing is stored twice)") from None  # fmt: skip
        if done is not None:
            return done


def _answer(
    sock: socket.socket, message: dict[str, Any], ledgers: dict[str, CutLedger],
    say: Callable[[str], None], on_runs: Callable[[dict[str, str]], None],
) -> list[ImportAnswer] | None:  # fmt: skip
    """Act on one message; the runs at ``done``."""
    if "say" in message:
        say(str(message["say"]))
    elif "runs" in message:
        made = {str(k): str(v) for k, v in dict(message["runs"]).items()}
        ledgers.update({run_id: CutLedger(ledger_path(run_id)) for run_id in made.values()})
        protocol.send(sock, {"ledgers": {r: ledger.cuts() for r, ledger in ledgers.items()}})
        on_runs(made)
    elif "cut" in message:
        run_id, file_name, offset = message["cut"]
        ledgers[str(run_id)].add(str(file_name), int(offset))
        protocol.send(sock, {"ok": True})
    elif "done" in message:
        return [ImportAnswer(str(r["name"]), str(r["run_id"]), dict(r["counts"]))
                for r in message["done"]]  # fmt: skip
    else:
        raise SafeboardError(f"the server answered what this command does not know: "
                             f"{json.dumps(message)[:200]}")  # fmt: skip
    return None
