"""The runs of a TensorBoard log directory (found by safeboard/logdirs.py), made without
the event-file reader (no numpy): ``safeboard import tensorboard`` makes them while the
reader's modules load in a thread beside it, so the server's work and the command's start
overlap (P7)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from pathlib import Path

from safeboard.client.typed import Client
from safeboard.errors import Conflict, NotFound, ProjectMoved
from safeboard.logdirs import is_event_file, run_dirs, run_id_for

__all__ = ["is_event_file", "make_run", "run_dirs", "run_id_for"]


def make_run(
    client: Client, project: str, name: str, directory: Path | str, say: Callable[[str], None]
) -> tuple[str, str]:
    """The run of ``directory`` (made unless it is there), and the project it is in: a
    project renamed since is followed to its new name, never made again under the old
    one; a project that does not exist yet is made, as the SDK's init() does. A ``str``
    directory is taken as already resolved (the import socket's server opens no path)."""
    resolved = directory if isinstance(directory, str) else str(directory.resolve())
    system = {"tensorboard": {"dir": resolved, "host": socket.gethostname()}}

    def create(project: str) -> tuple[str, str]:
        run_id = run_id_for(project, resolved)  # the same under the new name
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
