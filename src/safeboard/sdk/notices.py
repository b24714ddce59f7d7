"""What the SDK tells the person running a training script: one line each on stderr,
prefixed ``safeboard:``, whatever logging is configured (they must see it).

The run's dashboard address at ``init()`` can be silenced (``init(quiet=True)`` or
``SAFEBOARD_QUIET=1``); warnings about data that is not delivered cannot.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from safeboard.client import paths
from safeboard.client.local_socket import LocalServerDown
from safeboard.errors import SafeboardError

__all__ = [
    "QUIET_ENV",
    "error_record",
    "quiet_from_env",
    "run_url",
    "say",
    "say_away",
    "say_busy",
    "say_refused",
    "say_started",
]

QUIET_ENV = "SAFEBOARD_QUIET"


def quiet_from_env() -> bool:
    return os.environ.get(QUIET_ENV, "").strip().lower() not in ("", "0", "false", "no")


def say(line: str) -> None:
    print(f"safeboard: {line}", file=sys.stderr, flush=True)  # noqa: T201  (see module doc)


def run_url(server_url: str, run_id: str) -> str:
    """The run's page in the dashboard."""
    return server_url.rstrip("/") + paths.run_page(run_id)


def say_started(name: str, server_url: str | None, run_id: str, spool: Path) -> None:
    if server_url is None:
        say(f"run {name} is offline: kept in {spool}; send it with `safeboard sync`")
    else:
        say(f"run {name} -> {run_url(server_url, run_id)}")


def _cause(exc: SafeboardError) -> str:
    """The transport's reason ("connection refused", "timed out") when there is one
    (kept as the context of the client's ServiceUnavailable), else the server's message."""
    seen: BaseException | None = exc.__context__
    while seen is not None:
        if isinstance(seen, LocalServerDown):
            return str(seen)
        if isinstance(seen, TimeoutError) or "Timeout" in type(seen).__name__:
            return "timed out"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror[0].lower() + seen.strerror[1:]
        seen = seen.__cause__ or seen.__context__
    return exc.message


def say_away(server_url: str, exc: SafeboardError, spool: Path) -> None:
    say(
        f"cannot reach {server_url}: {_cause(exc)}; logging to the spool ({spool}) and "
        "retrying in the background"
    )


def say_busy(server_url: str, exc: SafeboardError, wait: float, spool: Path) -> None:
    """The server answered "not now" and said when to come back (a 503 or 429 with
    Retry-After): said once while it lasts, not per batch."""
    say(
        f"the server at {server_url} cannot take data now ({exc.code}: {exc.message}); "
        f"sending again in {wait:.0f} s, backing off while it lasts. Logging goes on into "
        f"the spool ({spool}): nothing is lost"
    )


def say_refused(
    name: str, run_id: str, exc: SafeboardError, spool: Path, *, task: bool = False
) -> None:
    """``task``: a task's run, whose task token was refused: nothing brings a token back
    (its attempt ended: cancelled, lost, retried), so only a person's key can deliver."""
    if task:
        say(
            f"run {name} ({run_id}): the server refused its data: {exc.message}. This task's "
            f"attempt is over (cancelled, lost or retried), so its token sends nothing more: "
            f"what it logs stays in the spool ({spool}) on this machine, where `safeboard "
            f"sync` with your own key can deliver it"
        )
        return
    say(
        f"run {name} ({run_id}): the server refused its data: {exc.message}. Logging goes on "
        f"into the spool ({spool}); once that is fixed, `safeboard sync` sends it"
    )


def error_record(exc: SafeboardError) -> dict[str, Any]:
    """What the spool's run.json keeps of the failure that stopped delivery (``last_error``)."""
    return {"code": exc.code, "message": exc.message}
