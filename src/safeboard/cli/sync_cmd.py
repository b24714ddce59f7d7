"""``safeboard sync``: upload offline runs and what runs left in the spool; ``--discard RUN``
drops a run that can never be delivered."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from safeboard.words import count

if TYPE_CHECKING:
    from safeboard.sdk.sync import SyncResult

__all__ = ["sync"]


@click.command()
@click.option("--url", default=None, help="Server (default: each run's own, or your login).")
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Spool directory (default: $SAFEBOARD_SPOOL_DIR or the user state dir).",
)
@click.option(
    "--discard",
    metavar="RUN",
    default=None,
    help="Delete this spooled run (id, unique id prefix, or name) instead of sending it.",
)
@click.option("--yes", is_flag=True, help="With --discard: do not ask for confirmation.")
def sync(url: str | None, spool_dir: Path | None, discard: str | None, yes: bool) -> None:
    """Deliver spooled runs: offline runs, and points a run could not send in time. Exits
    non-zero when a run is left undelivered, after saying why."""
    from safeboard.sdk.sync import sync_all

    if discard is not None:
        _discard(discard, spool_dir, yes=yes)
        return
    failed = 0

    def report(result: SyncResult) -> None:
        nonlocal failed
        click.echo(_line(result))
        failed += result.error is not None

    results = sync_all(spool_dir, url=url, progress=report)
    if not results:
        click.echo("nothing to sync")
    if failed:
        click.echo(
            f"safeboard: {count(failed, 'run')} left undelivered: fix the cause and run "
            "`safeboard sync` again, or drop a run for good with `safeboard sync --discard RUN`",
            err=True,
        )
        raise SystemExit(1)


def _things(points: int, artifacts: int) -> str:
    """Counts that agree ("3 points and 1 artifact"), zeros left out ("nothing")."""
    said = [count(n, word) for n, word in ((points, "point"), (artifacts, "artifact")) if n]
    return " and ".join(said) or "nothing"


def _line(result: SyncResult) -> str:
    head = f"{result.name} ({result.run_id})"
    left = _things(result.pending_points, result.pending_artifacts)
    if result.writer is not None:
        pid = f" (pid {result.writer})" if result.writer else ""
        return (
            f"{head}: still being written by its script{pid}, which delivers it: left alone "
            f"({left} spooled now)"
        )
    state = "done" if result.done else ("failed" if result.error else "still running")
    if result.orphaned and result.done:
        state += " (its script ended without finishing the run: marked failed)"
    line = f"{head}: {_things(result.points, result.artifacts)} sent, {state}"
    if result.dropped:
        line += f", {count(result.dropped, 'point')} refused by the server"
    if result.dropped_artifacts:
        line += f", {count(result.dropped_artifacts, 'artifact')} refused by the server"
    if result.error:
        line += f", {left} still spooled: {result.error}"
    return line


def _discard(ref: str, spool_dir: Path | None, *, yes: bool) -> None:
    from safeboard.sdk.spool import SpoolLocked
    from safeboard.sdk.sync import discard, find_spooled

    spool = find_spooled(ref, spool_dir)
    meta = spool.read_meta()
    pid = spool.holder()
    if pid is not None:
        raise click.ClickException(_still_running(meta, spool.path.name, pid))
    things = _things(spool.pending_points(), len(spool.pending_artifacts()))
    what = f"run {meta.get('name')} ({spool.path.name}): {things}"
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"not discarding run {meta.get('name')} ({spool.path.name}; {things}) without "
                "a confirmation, and there is no terminal to ask on: add --yes"
            )
        click.confirm(f"Delete {what} from {spool.path}, for good?", abort=True)
    try:
        discard(spool)
    except SpoolLocked as locked:  # its script started meanwhile (a resumed run)
        raise click.ClickException(_still_running(meta, spool.path.name, locked.pid)) from None
    click.echo(f"discarded {what}")


def _still_running(meta: dict[str, object], run_id: str, pid: int) -> str:
    by = f"its script (pid {pid})" if pid else "its script"
    return (
        f"not discarding run {meta.get('name')} ({run_id}): it is still being written by "
        f"{by}; stop that script first (or let it finish), then discard it"
    )
