"""``safeboard artifacts upload | download | list | rm``: a run's files, with progress bars
(bytes, rate, time left) and resume: the same command run again after an interruption
carries on where the server (or the ``.part`` file) stopped."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from safeboard.sizes import human_size as human

if TYPE_CHECKING:
    from rich.progress import Progress as Bar

    from safeboard.client.http import ApiClient

__all__ = ["artifacts"]

KINDS = ("file", "image", "model", "dataset", "table")
_url = click.option("--url", default=None, help="Server (default: as the SDK finds it).")
_LABELS = {"hash": "hashing", "upload": "uploading", "download": "downloading",
           "verify": "checking"}  # fmt: skip


def _api(url: str | None) -> ApiClient:
    from safeboard.client.credentials import resolve_server

    access = resolve_server(url)
    if access.api_key is None:
        raise click.ClickException(f"no API key for {access.url}: run `safeboard login`")
    return access.client()


class _Bars:
    """One rich progress bar per phase (hash, upload, ...) on stderr, shown from the first
    byte on (nothing is drawn for a command that fails before); standard output keeps
    only the result."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Bar | None = None
        self.tasks: dict[str, Any] = {}
        self.first: dict[str, int] = {}

    def _start(self) -> Bar:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
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
            resumed = f" (from {human(done)})" if done and phase in ("upload", "download") else ""
            description = f"{_LABELS.get(phase, phase)} {self.label}{resumed}"
            task = self.tasks[phase] = bar.add_task(description, total=total or 1)
        bar.update(task, completed=done if total else 1)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def _progress(label: str) -> Iterator[_Bars]:
    bars = _Bars(label)
    try:
        yield bars
    finally:
        bars.stop()


@click.group()
def artifacts() -> None:
    """A run's files: upload, download, list, remove."""


@artifacts.command("upload")
@click.argument("run_id")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Name to show (default: the file's name).")
@click.option("--kind", type=click.Choice(KINDS), default="file", show_default=True)
@click.option("--content-type", default=None, help="type/subtype (default: from the name).")
@click.option("--step", type=click.IntRange(min=0), default=None, help="Step it belongs to.")
@_url
def upload(
    run_id: str,
    path: Path,
    name: str | None,
    kind: str,
    content_type: str | None,
    step: int | None,
    url: str | None,
) -> None:
    """Upload PATH as an artifact of RUN_ID. Interrupted, the same command resumes."""
    from safeboard.client.artifacts import upload_file

    try:
        with _api(url) as api, _progress(name or path.name) as bars:
            artifact = upload_file(
                api, run_id, path, name=name, kind=kind, content_type=content_type,
                step=step, progress=bars,
            )  # fmt: skip
    except KeyboardInterrupt:
        click.echo("interrupted: run the same command again to resume the upload", err=True)
        raise SystemExit(130) from None
    resumed = bars.first.get("upload", 0)
    note = f", resumed at {human(resumed)}" if 0 < resumed < artifact["size"] else ""
    if resumed and resumed == artifact["size"]:
        note = ", already on the server"
    click.echo(
        f"uploaded {artifact['name']}: artifact {artifact['id']} "
        f"({human(artifact['size'])}, sha256 {artifact['sha256']}{note})"
    )


@artifacts.command("download")
@click.argument("artifact_id")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="File or directory to write (default: its name, here).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing file.")
@_url
def download(artifact_id: str, output: Path | None, force: bool, url: str | None) -> None:
    """Download an artifact (checked against its SHA-256). Interrupted, the same command
    resumes from the .part file it left."""
    from safeboard.client.downloads import download as fetch

    try:
        with _api(url) as api, _progress(artifact_id[:12]) as bars:
            written = fetch(api, artifact_id, output, overwrite=force, progress=bars)
    except KeyboardInterrupt:
        click.echo("interrupted: run the same command again to resume the download", err=True)
        raise SystemExit(130) from None
    click.echo(f"downloaded artifact {artifact_id} to {written} ({human(written.stat().st_size)})")


@artifacts.command("list")
@click.argument("run_id")
@_url
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_artifacts(run_id: str, url: str | None, as_json: bool) -> None:
    """The artifacts of a run."""
    items: list[dict[str, Any]] = []
    with _api(url) as api:
        cursor: str | None = None
        seen: set[str] = set()
        while True:  # every page, in the order the artifacts were declared
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = api.get(f"/api/v1/runs/{run_id}/artifacts", params=params).json()
            items += page["items"]
            cursor = page.get("next_cursor")  # (an older server sends one page only)
            if not cursor or cursor in seen:
                break
            seen.add(cursor)
    if as_json:
        for item in items:
            click.echo(json.dumps(item))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Column, Table

    table = Table(
        Column("artifact", no_wrap=True, min_width=32), Column("name", min_width=10), "kind",
        Column("size", no_wrap=True), "state", "step", Column("created", no_wrap=True),
    )  # fmt: skip
    for item in items:
        state = item["state"]
        if state != "ready":
            state += f" ({human(item['received'])})"
        step = "" if item["step"] is None else str(item["step"])
        table.add_row(item["id"], escape(item["name"]), item["kind"], human(item["size"]),
                      state, step, item["created_at"][:16].replace("T", " "))  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console.width = 160  # piped or logged: whole ids and names rather than 80 columns
    console.print(table)
    if not items:
        click.echo("no artifacts", err=True)


@artifacts.command("rm")
@click.argument("artifact_id")
@click.option("--yes", is_flag=True, help="Do not ask.")
@_url
def remove(artifact_id: str, yes: bool, url: str | None) -> None:
    """Delete an artifact (its bytes too)."""
    with _api(url) as api:
        artifact = api.get(f"/api/v1/artifacts/{artifact_id}").json()
        if not yes:
            if sys.stdin is None or not sys.stdin.isatty():
                raise click.ClickException("deleting needs --yes when not asked at a terminal")
            click.confirm(
                f"delete {artifact['name']!r} ({human(artifact['size'])}) of run "
                f"{artifact['run_id']}?",
                abort=True,
            )
        api.delete(f"/api/v1/artifacts/{artifact_id}")
    click.echo(f"deleted artifact {artifact_id} ({artifact['name']})")
