"""The child process: TensorBoard, unchanged, on a Unix socket (no TCP port).

Run as ``python -m safeboard.tensorboards.child SOCKET LOGDIR PATH_PREFIX`` by the
supervisor, with ``TMPDIR`` set to a private directory (TensorBoard writes its info file
under ``$TMPDIR/.tensorboard-info``). It goes through TensorBoard's documented hook,
``program.TensorBoard(server_class=...)``, and must be the process's main thread
(TensorBoard installs signal handlers).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tensorboard import program
from werkzeug.serving import make_server

__all__ = ["main"]


def bound_socket(path: str) -> socket.socket:
    """A listening Unix socket at ``path`` (relative to the working directory: werkzeug
    would make it absolute, and a socket's absolute path may hold at most 107 bytes, which
    a deep data directory exceeds), born 0600 in its 0700 directory."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    Path(path).chmod(0o600)
    listener.listen(128)
    return listener


def main(argv: list[str]) -> int:
    socket_path, logdir, prefix = argv

    class UnixSocketServer(program.TensorBoardServer):  # type: ignore[misc]
        def __init__(self, wsgi_app: Any, flags: Any) -> None:
            del flags
            listener = bound_socket(socket_path)
            self._server = make_server("unix://" + socket_path, 0, wsgi_app, threaded=True,
                                       fd=listener.fileno())  # fmt: skip

        def serve_forever(self) -> None:
            self._server.serve_forever()

        def get_url(self) -> str:
            return "http://unix-socket:1/"  # TensorBoard's info file wants a port

    # --load_fast false: the Rust data server would listen on a loopback TCP port (gRPC)
    # that any local user could reach; --port only feeds TensorBoard's info file.
    board = program.TensorBoard(server_class=UnixSocketServer)
    board.configure(
        argv=[
            sys.argv[0], "--logdir", logdir, "--path_prefix", prefix,
            "--load_fast", "false", "--port", "1",
        ]
    )  # fmt: skip
    _watch_parent()
    result = board.main()
    return int(result or 0)


def _watch_parent() -> None:
    """End with the server, however it ended (a SIGKILL too): once the parent is gone
    this process is re-parented, and it exits."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
