"""TensorBoard over runs: the runs' event files, kept as their artifacts (``tensorboard/…``,
sdk/tbupload.py), laid out in the instance's own logdir.

TensorBoard reads only these copies: never a directory named in a run's metadata
(``system["tensorboard"]["dir"]`` is written by clients, and any editor of a project could
point it at another user's directory on the server). Directory names are the run names,
made safe (letters, digits, ``._-``, one component per ``/``) and unique.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["EventFiles", "fill_logdir", "safe_path"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class EventFiles(Protocol):
    """The artifacts domain's ``RunEventFiles`` (passed in by safeboard.services)."""

    def of_runs(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, str, int]]]:
        """By run: ``(artifact id, path under tensorboard/, size)`` of its newest versions."""

    def copy(self, artifact_id: str, size: int, target: Path) -> None:
        """The stored bytes into the new file ``target``."""


def safe_path(name: str, *, fallback: str = "run") -> str:
    """``name`` as a relative path of safe components: no ``..``, no ``.``, no empty
    component, no character but letters, digits and ``._-`` (others become ``_``)."""
    parts = []
    for part in name.split("/"):
        cleaned = _UNSAFE.sub("_", part)[:100]
        if cleaned.strip(".") == "":
            cleaned = cleaned.replace(".", "_")
        if cleaned:
            parts.append(cleaned)
    return "/".join(parts[:16]) or fallback


def fill_logdir(
    logdir: Path,
    names: Mapping[str, str],
    files: Mapping[str, list[tuple[str, str, int]]],
    source: EventFiles,
) -> None:
    """Lay out each run's files under ``logdir/<safe unique run name>/``; files already
    there with the same size are kept (an instance reused), changed ones replaced."""
    taken: set[str] = set()
    for run_id in sorted(files, key=lambda r: (names[r], r)):
        directory = safe_path(names[run_id])
        if directory.lower() in taken or any(
            t.startswith(directory.lower() + "/") or directory.lower().startswith(t + "/")
            for t in taken
        ):
            directory = f"{directory}-{run_id[:8]}"
        taken.add(directory.lower())
        for artifact_id, relative, size in files[run_id]:
            target = logdir / directory / safe_path(relative, fallback="events.out.tfevents")
            if ".tfevents." not in target.name:
                continue  # TensorBoard reads only event files
            _place(source, artifact_id, size, target)


def _place(source: EventFiles, artifact_id: str, size: int, target: Path) -> None:
    if target.is_file() and target.stat().st_size == size:
        return
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{artifact_id}.part")
    partial.unlink(missing_ok=True)
    source.copy(artifact_id, size, partial)
    partial.replace(target)
