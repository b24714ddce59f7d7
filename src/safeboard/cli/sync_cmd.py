"""``safeboard sync``: upload offline runs and what runs left in the spool; ``--discard RUN``
drops a run that can never be delivered."""

from __future__ import annotations

import sys
from pathlib import Path

import click

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
    from safeboard.sdk.sync import SyncResult, sync_all

    if discard is not None:
        _discard(discard, spool_dir, yes=yes)
        return
    failed = 0

    def report(result: SyncResult) -> None:
        nonlocal failed
        state = "done" if result.done else ("still running" if not result.error else "failed")
        sent = f"{result.points} points"
        if result.artifacts or result.dropped_artifacts:
            sent += f" and {result.artifacts} artifact{'s' * (result.artifacts != 1)}"
        line = f"{result.name} ({result.run_id}): {sent} sent, {state}"
        if result.dropped:
            line += f", {result.dropped} points refused by the server"
        if result.dropped_artifacts:
            line += f", {result.dropped_artifacts} artifacts refused by the server"
        if result.error:
            failed += 1
            left = f"{result.pending_points} points"
            if result.pending_artifacts:
                plural = "s" * (result.pending_artifacts != 1)
                left += f" and {result.pending_artifacts} artifact{plural}"
            line += f", {left} still spooled: {result.error}"
        click.echo(line)

    results = sync_all(spool_dir, url=url, progress=report)
    if not results:
        click.echo("nothing to sync")
    if failed:
        runs = "run is" if failed == 1 else "runs are"
        click.echo(
            f"{failed} {runs} left undelivered: fix the cause and run `safeboard sync` again, "
            "or drop a run for good with `safeboard sync --discard RUN`",
            err=True,
        )
        raise SystemExit(1)


def _discard(ref: str, spool_dir: Path | None, *, yes: bool) -> None:
    from safeboard.sdk.sync import find_spooled

    spool = find_spooled(ref, spool_dir)
    meta = spool.read_meta()
    points = spool.pending_points()
    files = len(spool.pending_artifacts())
    what = f"run {meta.get('name')} ({spool.path.name}): {points} points and {files} artifacts"
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"not discarding {what} without a confirmation, and there is no terminal to "
                "ask on: add --yes"
            )
        click.confirm(f"Delete {what} from {spool.path}, for good?", abort=True)
    spool.remove()
    click.echo(f"discarded {what}")
