"""``safeboard import tensorboard LOGDIR --project P [--follow]``: TensorBoard event files
into safeboard runs (safeboard.sdk.tbimport; docs/tensorboard.md)."""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from safeboard.cli.lean import exit_at_once, import_http_lean, single_threaded_blas
from safeboard.cli.options import url_option
from safeboard.words import count

if TYPE_CHECKING:
    from safeboard.sdk.tbimport import ImportedRun

__all__ = ["import_group"]


@click.group("import")
def import_group() -> None:
    """Bring other tools' logs into safeboard."""


@import_group.command("tensorboard")
@click.argument("logdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--project", "-p", required=True, help="Project of the runs (made if missing).")
@click.option("--follow", is_flag=True, help="Keep reading growing and new files until Ctrl-C.")
@click.option(
    "--poll", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True,
    help="With --follow: seconds between two reads.",
)  # fmt: skip
@click.option(
    "--keep-event-files/--no-keep-event-files", default=True, show_default=True,
    help="Also keep each event file as an artifact of its run (the dashboard's TensorBoard "
    "button shows these copies).",
)  # fmt: skip
@url_option
def tensorboard(
    logdir: Path, project: str, follow: bool, poll: float, keep_event_files: bool, url: str | None
) -> None:
    """Import the event files under LOGDIR: each directory holding event files becomes a
    run named by its path. Importing again stores nothing twice. Exits 1 when a file had a
    damaged record or a refused image (the rest is imported)."""
    single_threaded_blas()  # first: the command's start is part of every import's time (P7)
    import_http_lean()
    from safeboard.client import Client
    from safeboard.client.credentials import resolve_server
    from safeboard.sdk.switching import responsive
    from safeboard.sdk.tbruns import make_run, run_dirs

    # The reader's modules (numpy among them) load beside the making of the runs, which
    # is mostly waiting for the server: about 25 ms less of every import (P7).
    loading = threading.Thread(target=_load_reader, name="safeboard-load", daemon=True)
    loading.start()
    dirs = run_dirs(logdir)
    if not dirs:
        _reader_loaded(loading)
        raise click.ClickException(f"no TensorBoard event files (*.tfevents.*) under {logdir}")
    access = resolve_server(url)
    access.require_key()
    stop = threading.Event()
    if follow:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        click.echo(f"following {logdir} (Ctrl-C to stop)", err=True)

    def say(line: str) -> None:
        click.echo(f"safeboard: {line}", err=True)

    with Client(access.client(renewing=True)) as client:  # --follow may outlive a restart
        made = {}
        with responsive():  # each answer taken at once, not after the loader's 5 ms
            for name, directory in dirs.items():
                made[name], project = make_run(client, project, name, directory, say)
        _reader_loaded(loading)
        from safeboard.sdk.tbimport import import_tensorboard

        done = import_tensorboard(
            client, logdir, project, follow=follow, poll=poll, stop=stop, say=say,
            keep_files=keep_event_files, made=made,
        )  # fmt: skip
    errors = 0
    for run in done:
        click.echo(_line(run))
        errors += len(run.counts.errors)
    if errors:
        raise click.ClickException(
            f"{count(errors, 'problem')} with the event files, said above: a damaged file was "
            "imported up to the record named, the other files and runs in full"
        )
    exit_at_once(0)  # the client is closed, the runs finished: no teardown (P7 times it)


def _load_reader() -> None:
    """Import the event-file reader. A failure is left to the import of it that follows,
    in the command's own thread, which raises it again."""
    with contextlib.suppress(Exception):
        importlib.import_module("safeboard.sdk.tbimport")


def _reader_loaded(loading: threading.Thread) -> None:
    """Wait for the reader's modules; without its C part (it works, slower) say so at
    once, with the fix."""
    loading.join()
    from safeboard.eventfiles import accel

    if accel.SCAN is None:
        click.echo(f"safeboard: {accel.NOT_BUILT}", err=True)


def _line(run: ImportedRun) -> str:
    c = run.counts
    parts = [count(c.points, "point")]
    parts += [count(n, word) for n, word in ((c.images, "image"), (c.texts, "text"),
              (c.histograms, "histogram"), (c.hparams, "hparams record")) if n]  # fmt: skip
    return f"{run.name} ({run.run_id}): {', '.join(parts)}"
