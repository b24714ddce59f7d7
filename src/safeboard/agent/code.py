"""The agent's side of a task's code: fetch the archive of the leased attempt (the fenced
agent route), check its SHA-256 against the lease's, and unpack it into the task's
working directory (``unpack.py``). Any failure is a reason, never a traceback: the
attempt then fails with it, its command not run (exit code 125)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from safeboard.agent.unpack import CodeRefused, unpack, unpack_limit
from safeboard.client import Client
from safeboard.client.code import fetch_task_code
from safeboard.client.job_models import TaskLease
from safeboard.client.retry import RetryPolicy
from safeboard.errors import RateLimited, SafeboardError, ServiceUnavailable

__all__ = ["EXIT_CODE_REFUSED", "MAX_ARCHIVE_BYTES", "prepare_code"]

EXIT_CODE_REFUSED = 125  # the command was not run: its code could not be prepared
MAX_ARCHIVE_BYTES = 4 * 1024**3  # the most a server may be set to take (jobs.max_code_bytes)
FETCH_TRIES = 5
_BACKOFF = RetryPolicy(base=1.0, cap=15.0, retry_after_cap=60.0)


def prepare_code(
    client: Client, lease: TaskLease, directory: Path, stop: threading.Event
) -> str | None:
    """Put the lease's code in ``directory``; why it could not, or None."""
    if not lease.code_sha256:
        return None
    archive = directory.parent / f".{directory.name}.code.tar.gz"  # beside, not in, the cwd
    try:
        problem = _fetch(client, lease, archive, stop)
        if problem is not None:
            return problem
        try:
            unpack(archive, directory, limit=unpack_limit(archive.stat().st_size))
        except CodeRefused as exc:
            return f"code refused: {exc}"
        except OSError as exc:
            return f"cannot unpack the code: {exc.strerror or exc}"
        return None
    finally:
        with contextlib.suppress(OSError):
            archive.unlink()


def _fetch(client: Client, lease: TaskLease, archive: Path, stop: threading.Event) -> str | None:
    expected = lease.code_sha256 or ""
    failures = 0
    while True:
        try:
            fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as handle:
                got = fetch_task_code(client, lease.task_id, lease.attempt, handle,
                                      MAX_ARCHIVE_BYTES)  # fmt: skip
        except (ServiceUnavailable, RateLimited) as exc:
            failures += 1
            if failures >= FETCH_TRIES or stop.is_set():
                return f"cannot fetch the code: {exc.message}"
            stop.wait(_BACKOFF.delay(failures, exc))
            continue
        except SafeboardError as exc:
            return f"cannot fetch the code: {exc.message}"
        except OSError as exc:
            return f"cannot store the code: {exc.strerror or exc}"
        if got != expected:
            return (f"the code's SHA-256 is {got[:12]}..., not {expected[:12]}... "
                    "as leased")  # fmt: skip
        return None
