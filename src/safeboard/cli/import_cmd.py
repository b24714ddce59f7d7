"""``safeboard import tensorboard LOGDIR --project P [--follow]``: TensorBoard event files
into safeboard runs (safeboard.sdk.tbimport; docs/tensorboard.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from safeboard.cli.lean import exit_at_once, import_http_lean, single_threaded_blas
from safeboard.cli.options import url_option
from safeboard.words import count

if TYPE_CHECKING:
    from safeboard.importsock.command import LocalServer

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
    damaged record or a refused image (the rest is imported). On the server's machine the
    files are handed to the server through its import socket; with --url or --follow they
    go over HTTP."""
    single_threaded_blas()  # first: the command's start is part of every import's time (P7)
    from safeboard.logdirs import run_dirs

    dirs = run_dirs(logdir)
    if not dirs:
        raise click.ClickException(f"no TensorBoard event files (*.tfevents.*) under {logdir}")
    from safeboard.importsock.command import local_server

    local = None if (follow or url) else local_server()
    done = None if local is None else _through_socket(local, dirs, project, keep_event_files)
    if done is None:
        done = _over_http(logdir, dirs, project, follow, poll, keep_event_files, url)
    errors = 0
    for name, run_id, counts in done:
        click.echo(_line(name, run_id, counts))
        errors += len(counts["errors"])
    if errors:
        raise click.ClickException(
            f"{count(errors, 'problem')} with the event files, said above: a damaged file was "
            "imported up to the record named, the other files and runs in full"
        )
    exit_at_once(0)  # the client is closed, the runs finished: no teardown (P7 times it)


def _say(line: str) -> None:
    click.echo(f"safeboard: {line}", err=True)


Done = list[tuple[str, str, dict[str, Any]]]  # each run's name, id and counts


def _through_socket(
    local: LocalServer, dirs: dict[str, Path], project: str, keep_files: bool
) -> Done | None:
    """The import done by the local server, from the files' descriptors handed over
    (safeboard/importsock); None when that cannot be done here. The files kept for the
    TensorBoard button go over HTTP, in a thread beside the server's reading."""
    from safeboard.errors import SafeboardError
    from safeboard.importsock.command import import_through_socket

    keeping = _Keeping(dirs) if keep_files else None
    try:
        answers = import_through_socket(
            local, dirs, project, say=_say, on_runs=keeping.start if keeping else lambda _: None
        )
    except SafeboardError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        if keeping is not None:
            keeping.join()
    if answers is None:
        return None
    return [(a.name, a.run_id, a.counts) for a in answers]


class _Keeping:
    """The event files kept as artifacts of their runs (tbupload.py), over HTTP, in a
    thread started once the server has made the runs."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs
        self.thread: threading.Thread | None = None

    def start(self, made: dict[str, str]) -> None:
        self.thread = threading.Thread(
            target=self._keep, args=(made,), name="safeboard-tb-keep", daemon=True
        )
        self.thread.start()

    def _keep(self, made: dict[str, str]) -> None:
        import_http_lean()
        from safeboard.client import Client
        from safeboard.client.credentials import resolve_server
        from safeboard.errors import SafeboardError
        from safeboard.logdirs import is_event_file
        from safeboard.sdk.tbupload import Keeper

        try:
            with Client(resolve_server().client()) as client:
                for name, run_id in made.items():
                    directory = self.dirs[name]
                    files = [(p, p.name) for p in sorted(directory.iterdir()) if is_event_file(p)]
                    Keeper(client, run_id, _say).keep(files)
        except Exception as exc:  # noqa: BLE001  (said: the import itself goes on)
            why = exc.message if isinstance(exc, SafeboardError) else f"{type(exc).__name__}: {exc}"
            _say(f"event files not kept for the TensorBoard button: {why}")

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()


def _over_http(
    logdir: Path, dirs: dict[str, Path], project: str, follow: bool, poll: float,
    keep_files: bool, url: str | None,
) -> Done:  # fmt: skip
    import_http_lean()
    from safeboard.client import Client
    from safeboard.client.credentials import resolve_server
    from safeboard.sdk.switching import responsive
    from safeboard.sdk.tbruns import make_run

    # The reader's modules (numpy among them) load beside the making of the runs, which
    # is mostly waiting for the server: about 25 ms less of every import (P7).
    loading = threading.Thread(target=_load_reader, name="safeboard-load", daemon=True)
    loading.start()
    try:
        access = resolve_server(url)
        access.require_key()
    except BaseException:
        _reader_loaded(loading)  # a missing C reader is said at once, whatever comes next
        raise
    stop = threading.Event()
    if follow:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        click.echo(f"following {logdir} (Ctrl-C to stop)", err=True)

    with Client(access.client(renewing=True)) as client:  # --follow may outlive a restart
        made = {}
        with responsive():  # each answer taken at once, not after the loader's 5 ms
            for name, directory in dirs.items():
                made[name], project = make_run(client, project, name, directory, _say)
        _reader_loaded(loading)
        from safeboard.sdk.tbimport import import_tensorboard

        done = import_tensorboard(
            client, logdir, project, follow=follow, poll=poll, stop=stop, say=_say,
            keep_files=keep_files, made=made,
        )  # fmt: skip
    return [(run.name, run.run_id, dataclasses.asdict(run.counts)) for run in done]


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


def _line(name: str, run_id: str, counts: dict[str, Any]) -> str:
    words = (("images", "image"), ("texts", "text"), ("histograms", "histogram"),
             ("hparams", "hparams record"))  # fmt: skip
    parts = [count(counts["points"], "point")]
    parts += [count(counts[key], word) for key, word in words if counts[key]]
    return f"{name} ({run_id}): {', '.join(parts)}"
