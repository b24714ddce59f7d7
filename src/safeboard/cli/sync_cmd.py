"""``safeboard sync``: upload offline runs and what runs left in the spool."""

from __future__ import annotations

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
def sync(url: str | None, spool_dir: Path | None) -> None:
    """Deliver spooled runs: offline runs, and points a run could not send in time."""
    from safeboard.sdk.sync import SyncResult, sync_all

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
            line += f": {result.error}"
        click.echo(line)

    results = sync_all(spool_dir, url=url, progress=report)
    if not results:
        click.echo("nothing to sync")
    if failed:
        raise SystemExit(1)
