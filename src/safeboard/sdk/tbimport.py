"""TensorBoard log directories brought into safeboard: ``safeboard import tensorboard``
and ``run.sync_tensorboard()``.

Every directory under the log directory that holds event files (``*.tfevents.*``) becomes
a run (tbruns.py: its name from its path, its id from the project and the directory, so
importing again reaches the same run), and its batches' ids come from file and byte
offsets (tbrun.py), so nothing is stored twice. Where the files came from is recorded in the
run's system information: ``system["tensorboard"] = {"dir": <absolute directory>,
"host": <host name>}`` (what a "TensorBoard" button on the run needs to find them).

Follow mode reads again every ``poll`` seconds: appended events, new files (a writer's
rotation) and new run directories, and waits for a record cut short at a file's end.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safeboard.client.typed import Client
from safeboard.errors import Conflict, SafeboardError
from safeboard.logdirs import CutLedger, ledger_path
from safeboard.sdk.tbrun import Counts, RunImport
from safeboard.sdk.tbruns import is_event_file, make_run, run_dirs, run_id_for
from safeboard.sdk.tbupload import Keeper

__all__ = [
    "ImportedRun", "LogdirImport", "TensorBoardSync", "import_tensorboard", "run_dirs",
    "run_id_for",
]  # fmt: skip

POLL_SECONDS = 2.0


def ledger_for(run_id: str) -> CutLedger:
    return CutLedger(ledger_path(run_id))


@dataclass
class ImportedRun:
    name: str
    run_id: str
    counts: Counts


class LogdirImport:
    """One log directory into one project: ``pass_()`` reads what is new, ``close()``
    sends what is kept and, with ``finish``, marks the runs finished."""

    def __init__(
        self, client: Client, logdir: Path, project: str,
        *, say: Callable[[str], None] = lambda _: None, keep_files: bool = True,
        made: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.client, self.logdir, self.project, self.say = client, logdir, project, say
        self.made = dict(made or {})  # run ids by name, of runs made before (make_run)
        self.keep_files = keep_files  # the event files kept as artifacts (tbupload.py)
        # Files that do not change while they are read (no --follow): kept at once, in a
        # thread beside the reading, rather than after it.
        self.files_fixed = False
        self.runs: dict[str, tuple[str, RunImport]] = {}
        self._keepers: dict[str, tuple[Keeper, threading.Thread | None]] = {}

    def pass_(self) -> bool:
        news = False
        for name, directory in run_dirs(self.logdir).items():
            if name not in self.runs:
                run_id = self._ensure_run(name, directory)
                importer = RunImport(
                    self.client, run_id, directory, say=self.say, ledger=ledger_for(run_id)
                )
                self.runs[name] = (run_id, importer)
                self._keep_early(name, run_id, directory)
            news |= self.runs[name][1].pass_()
        return news

    def _ensure_run(self, name: str, directory: Path) -> str:
        made = self.made.pop(name, None)
        if made is not None:
            return made
        run_id, self.project = make_run(self.client, self.project, name, directory, self.say)
        return run_id

    def _keep_early(self, name: str, run_id: str, directory: Path) -> None:
        if not self.keep_files:
            return
        keeper = Keeper(self.client, run_id, self.say)
        thread = None
        if self.files_fixed:
            files = [(p, p.name) for p in sorted(directory.iterdir()) if is_event_file(p)]
            thread = threading.Thread(
                target=self._keep, args=(keeper, files), name="safeboard-tb-keep", daemon=True
            )
            thread.start()
        self._keepers[name] = (keeper, thread)

    def _keep(self, keeper: Keeper, files: list[tuple[Path, str]]) -> None:
        try:
            keeper.keep(files)
        except SafeboardError as exc:  # said; close() tries again
            self.say(f"event files of {keeper.run_id} not kept yet: {exc.message}")

    def close(self, *, finish: bool = True) -> list[ImportedRun]:
        done = []
        for name, (run_id, importer) in self.runs.items():
            keeper, thread = self._keepers.get(name, (None, None))
            try:
                importer.close()
            finally:  # a failure still waits for the copies under way: never left running
                if thread is not None:
                    thread.join()
            if keeper is not None:
                keep_event_files(keeper, importer)
            if finish:
                with contextlib.suppress(Conflict):  # finished by an earlier import
                    self.client.finish_run(run_id)
            done.append(ImportedRun(name, run_id, importer.counts))
        return done


def keep_event_files(keeper: Keeper, importer: RunImport) -> None:
    """The files just imported, kept as artifacts of the run for the dashboard's
    TensorBoard button (tbupload.py): those not kept yet, or changed since."""
    keeper.keep([(p, p.relative_to(importer.directory).as_posix()) for p in importer.files])


def import_tensorboard(
    client: Client,
    logdir: Path,
    project: str,
    *,
    follow: bool = False,
    poll: float = POLL_SECONDS,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = lambda _: None,
    keep_files: bool = True,
    made: dict[str, str] | None = None,
) -> list[ImportedRun]:
    """Import ``logdir`` into ``project``; with ``follow``, keep reading until ``stop`` is
    set (or KeyboardInterrupt), then read once more and finish the runs. ``keep_files``:
    keep each event file as an artifact of its run too (the TensorBoard button's).
    ``made``: run ids by name of runs already made in ``project`` (make_run)."""
    stop = stop or threading.Event()
    job = LogdirImport(client, logdir, project, say=say, keep_files=keep_files, made=made)
    job.files_fixed = not follow
    try:
        job.pass_()
        while follow and not stop.wait(poll):
            job.pass_()
    except KeyboardInterrupt:
        say("stopping: reading what is there once more")
    job.pass_()
    return job.close()


class TensorBoardSync:
    """``run.sync_tensorboard(logdir)``: a thread reading every event file under
    ``logdir`` into one run (a subdirectory's metrics prefixed with its path) until
    ``stop()``, which reads once more (what was written last) and waits for it."""

    def __init__(
        self, connect: Callable[[], Client], run_id: str, logdir: Path,
        *, poll: float = POLL_SECONDS, say: Callable[[str], None] = lambda _: None,
    ) -> None:  # fmt: skip
        self.logdir = logdir.resolve()
        self._connect, self.run_id, self.poll, self.say = connect, run_id, poll, say
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="safeboard-tensorboard", daemon=True
        )
        self.counts = Counts()
        self._said = ""

    def _prefix(self, path: Path) -> str:
        relative = path.parent.relative_to(self.logdir).as_posix()
        return "" if relative == "." else f"{relative}/"

    def start(self) -> TensorBoardSync:
        self._thread.start()
        return self

    def _loop(self) -> None:
        with self._connect() as client:
            importer = RunImport(
                client, self.run_id, self.logdir, recursive=True, prefix=self._prefix,
                say=self.say, ledger=ledger_for(self.run_id),
            )  # fmt: skip
            self.counts = importer.counts
            while not self._stop.is_set():
                self._pass(importer)
                self._stop.wait(self.poll)
            self._pass(importer)  # once more after the stop: what was written last
            self._pass(importer, close=True)
            try:
                keep_event_files(Keeper(client, self.run_id, self.say), importer)
            except SafeboardError as exc:  # the server away: the metrics are in the spool
                self.say(f"TensorBoard sync of {self.logdir}: event files not kept: {exc.message}")

    def _pass(self, importer: RunImport, *, close: bool = False) -> None:
        try:
            importer.close() if close else importer.pass_()
        except FileNotFoundError:
            pass  # the directory is not there yet: the writer makes it
        except SafeboardError as exc:  # the server away, or the run not there yet
            line = f"TensorBoard sync of {self.logdir}: {exc.message}; trying again"
            if line != self._said:  # once, not every poll
                self._said = line
                self.say(line)

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
