"""Keeping a task away from what the agent holds (docs/agents.md, "The security model").

- ``make_undumpable``: the agent marks itself non-dumpable at start (Linux
  ``prctl(PR_SET_DUMPABLE, 0)``), so a process of the same OS user, a task included,
  cannot read ``/proc/<agent pid>/environ`` or its memory, nor ptrace it. The agent's own
  core dumps are lost with it. A task is not affected: the kernel makes a process
  dumpable again when it execs a binary it may read.
- ``TaskUser``: ``agent run --task-user USER`` (the agent runs as root) starts each task as
  USER, its primary group only, in a directory of its own outside the agent's 0700 state
  directory (``Workspace``): ``agent.json``, the logs and the other tasks' directories
  stay out of its reach.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safeboard.errors import ConfigError

__all__ = [
    "AS_ROOT_WARNING",
    "TaskUser",
    "Workspace",
    "make_undumpable",
    "task_user",
    "tasks_as_root_warning",
]

_PR_SET_DUMPABLE = 4
AS_ROOT_WARNING = "warning: the agent runs as root without --task-user"


def make_undumpable() -> bool:
    """Mark this process non-dumpable (Linux); False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc's
        return int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class TaskUser:
    """The OS user each task runs as: its uid and its primary group, nothing else."""

    name: str
    uid: int
    gid: int


def task_user(name: str) -> TaskUser:
    """``--task-user NAME`` checked: the agent is root, NAME a known user other than root."""
    if os.geteuid() != 0:
        raise ConfigError("--task-user needs the agent to run as root (it starts each task "
                          "as that user): run it as root, or leave --task-user out")  # fmt: skip
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"--task-user: no such user {name!r} on this machine (create one, "
                          "e.g. useradd --system --no-create-home safeboard-task)"
                          ) from None  # fmt: skip
    if entry.pw_uid == 0:
        raise ConfigError(f"--task-user: {name!r} is root; tasks would read the agent's "
                          "credential: name an unprivileged user")  # fmt: skip
    where = Path(tempfile.gettempdir()).resolve()
    for folder in (where, *where.parents):
        if not folder.stat().st_mode & 0o001:
            raise ConfigError(f"--task-user: tasks get their directories in {where}, but "
                              f"{folder} is closed to other users: set TMPDIR to a directory "
                              "they can pass through (such as /tmp)")  # fmt: skip
    return TaskUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def jobs_as_root_warning() -> str | None:
    """What the Slurm launcher says at start when the agent runs as root."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    return ("warning: the agent runs as root, so its Slurm jobs run as root on the compute "
            "nodes: run it as the (unprivileged) user the jobs are for (docs/agents.md, "
            "\"Slurm\")")  # fmt: skip


def tasks_as_root_warning() -> str | None:
    """What to say at start when the agent runs as root without ``--task-user``."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    return (f"{AS_ROOT_WARNING}, so its tasks run as root and can read its credential "
            "(agent.json) and anything else on this machine: run it with --task-user USER "
            "(an unprivileged user made for tasks; docs/agents.md)")  # fmt: skip


class Workspace:
    """A task's directory: ``work`` (its cwd, and HOME with a task user), and ``root``,
    removed with everything in it when the attempt ends (``work`` itself without a task
    user). ``Workspace.outside``: ``<tmp>/safeboard-task-<id>-XXXX`` (root, 0711: the
    task user may pass, not list) holding ``work/`` (its code and CA copy, owned by the
    task user once ready) and the code archive (root, 0600)."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root = root
        self.work = work

    @classmethod
    def outside(cls, label: str) -> Workspace:
        root = Path(tempfile.mkdtemp(prefix=f"safeboard-task-{label}-"))
        root.chmod(0o711)  # passable, not listable: work/ is 0700
        (root / "work").mkdir(mode=0o700)
        return cls(root, root / "work")

    def hand_to(self, user: TaskUser) -> None:
        """Give ``work/`` and all in it to the task user (links not followed)."""
        for top, dirs, files in os.walk(self.work):
            for name in [*dirs, *files]:
                os.chown(Path(top) / name, user.uid, user.gid, follow_symlinks=False)
        os.chown(self.work, user.uid, user.gid, follow_symlinks=False)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
