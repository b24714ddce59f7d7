"""What a run records of the machine and process it was started from (``run.system``)."""

from __future__ import annotations

import getpass
import platform
import socket
import subprocess
import sys
from typing import Any

__all__ = ["ARGV_CHARS", "machine_info"]

ARGV_CHARS = 1_000  # each command-line argument kept in the system information


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": socket.gethostname(), "python": platform.python_version(),
        "platform": platform.platform(), "user": _user(),
        "argv": [arg[:ARGV_CHARS] for arg in sys.argv[:20]],
    }  # fmt: skip
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607  (git from PATH: where the user has it)
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"
