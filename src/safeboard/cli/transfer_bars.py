"""Progress bars of a transfer (hash, upload, download, check) on stderr: bytes, rate and
time left, with sizes written as everywhere else in safeboard (``safeboard.sizes``:
``12.4 KB``), not in rich's own units (``12.4 kB``). Imported only by a command that
moves a file, since rich takes a while to load."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from safeboard.sizes import human_size

__all__ = ["TransferBars"]

_LABELS = {"hash": "hashing", "upload": "uploading", "download": "downloading",
           "verify": "checking"}  # fmt: skip


class _BytesColumn(ProgressColumn):
    """``3.1 MB / 12.4 MB``."""

    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else human_size(int(task.total))
        return Text(f"{human_size(int(task.completed))} / {total}", style="progress.download")


class _RateColumn(ProgressColumn):
    """``1.5 MB/s``; ``?`` until rich has measured a rate."""

    def render(self, task: Task) -> Text:
        rate = task.finished_speed or task.speed
        shown = "?" if rate is None else f"{human_size(int(rate))}/s"
        return Text(shown, style="progress.data.speed")


class TransferBars:
    """One bar per phase, shown from the first byte on (nothing is drawn for a command
    that fails before); standard output keeps only the result. Called as the client's
    ``progress(phase, done, total)``."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Progress | None = None
        self.tasks: dict[str, Any] = {}
        self.first: dict[str, int] = {}  # bytes done when each phase began (a resume)

    def _start(self) -> Progress:
        self.bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            _BytesColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.bar.start()
        return self.bar

    def __call__(self, phase: str, done: int, total: int) -> None:
        bar = self.bar or self._start()
        task = self.tasks.get(phase)
        if task is None:
            self.first[phase] = done
            resumed = done and phase in ("upload", "download")
            since = f" (from {human_size(done)})" if resumed else ""
            description = f"{_LABELS.get(phase, phase)} {self.label}{since}"
            task = self.tasks[phase] = bar.add_task(description, total=total or 1)
        bar.update(task, completed=done if total else 1)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
