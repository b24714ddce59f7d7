"""A stand-in for TensorBoard that records what reaches it: run as
``python -m tests.support.echo_upstream SOCKET LOGDIR PATH_PREFIX`` by the supervisor.

Each request appends one JSON line (method, path, headers, body length) to
``requests.jsonl`` next to its socket and answers with that line. ``PREFIX/slow`` answers
after 30 s (the proxy's timeout); it sets a cookie, which the proxy must drop.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


def main(argv: list[str]) -> None:
    socket_path, _logdir, prefix = argv
    record = Path(socket_path).resolve().parent / "requests.jsonl"

    @Request.application  # type: ignore[misc]
    def app(request: Request) -> Response:
        seen: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": len(request.get_data()),
        }
        with record.open("a") as out:
            out.write(json.dumps(seen) + "\n")
        if request.path == f"{prefix}/slow":
            time.sleep(30)
        response = Response(json.dumps(seen), content_type="application/json")
        response.set_cookie("upstream", "planted")
        return response

    # Bound here, relative to the working directory (a socket path holds at most 107
    # bytes; werkzeug would make it absolute), as safeboard.tensorboards.child does.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    listener.bind(socket_path)
    os.umask(old)
    listener.listen(128)
    server = make_server("unix://" + socket_path, 0, app, threaded=True, fd=listener.fileno())
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
