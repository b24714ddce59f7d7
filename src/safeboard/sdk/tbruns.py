"""The runs of a TensorBoard log directory, found and made without the event-file reader
(no numpy): ``safeboard import tensorboard`` makes them while the reader's modules load
in a thread beside it, so the server's work and the command's start overlap (P7).

Every directory under the log directory that holds event files (``*.tfevents.*``) becomes
a run, named by its path relative to the log directory (the log directory's own name for
files at its top). The run's id comes from the project and the directory's absolute path,
so importing again reaches the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from collections.abc import Callable
from pathlib import Path

from safeboard.client.typed import Client
from safeboard.errors import Conflict, NotFound, ProjectMoved

__all__ = ["is_event_file", "make_run", "run_dirs", "run_id_for"]


def is_event_file(path: Path) -> bool:
    return ".tfevents." in path.name and path.is_file()


def run_dirs(logdir: Path) -> dict[str, Path]:
    """Each directory holding event files, by run name (its path under ``logdir``)."""
    found: dict[str, Path] = {}
    for path in sorted(logdir.rglob("*.tfevents.*")):
        if not is_event_file(path):
            continue
        relative = path.parent.relative_to(logdir).as_posix()
        name = logdir.resolve().name if relative == "." else relative
        found.setdefault(name[-200:] or "tensorboard", path.parent)
    return found


def run_id_for(project: str, directory: Path) -> str:
    key = f"tensorboard\0{project}\0{directory.resolve()}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def make_run(
    client: Client, project: str, name: str, directory: Path, say: Callable[[str], None]
) -> tuple[str, str]:
    """The run of ``directory`` (made unless it is there), and the project it is in: a
    project renamed since is followed to its new name, never made again under the old
    one; a project that does not exist yet is made, as the SDK's init() does."""
    system = {"tensorboard": {"dir": str(directory.resolve()), "host": socket.gethostname()}}

    def create(project: str) -> tuple[str, str]:
        run_id = run_id_for(project, directory)  # the same under the new name
        client.create_run(
            project, run_id=run_id, name=name, system=system, tags={"source": "tensorboard"}
        )
        return run_id, project

    try:
        return create(project)
    except ProjectMoved as exc:
        if not exc.new_name:
            raise
        say(f"project {project!r} was renamed to {exc.new_name!r}: importing there "
            "(use the new name)")  # fmt: skip
        return create(exc.new_name)
    except NotFound:
        with contextlib.suppress(Conflict):
            client.create_project(project)
        return create(project)
