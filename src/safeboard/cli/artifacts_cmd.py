"""``safeboard artifacts upload | download | list | rm``: a run's files, with progress bars
(bytes, rate, time left) and resume: the same command run again after an interruption
carries on where the server (or the ``.part`` file) stopped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from safeboard.cli.options import connect, json_option, url_option
from safeboard.sizes import human_size as human
from safeboard.vocabulary import ArtifactKind

if TYPE_CHECKING:
    from safeboard.cli.transfer_bars import TransferBars
    from safeboard.client import Client

__all__ = ["artifacts"]

KINDS = tuple(kind.value for kind in ArtifactKind)
_url = url_option


def _run_id(client: Client, given: str) -> str:
    from safeboard.cli.runs_cmd import resolve_run

    return resolve_run(client, given)


def _artifact_id(client: Client, given: str) -> str:
    """An artifact id as printed (whole, or any unique prefix) -> the whole id."""
    from safeboard.cli.ids import resolve

    return resolve("artifact", given, lambda p, limit: client.artifact_ids(p, limit=limit))


@contextmanager
def _progress(label: str) -> Iterator[TransferBars]:
    from safeboard.cli.transfer_bars import TransferBars

    bars = TransferBars(label)
    try:
        yield bars
    finally:
        bars.stop()


@click.group()
def artifacts() -> None:
    """A run's files: upload, download, list, rm (delete one)."""


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
        with connect(url) as client, _progress(name or path.name) as bars:
            artifact = upload_file(
                client.api, _run_id(client, run_id), path, name=name, kind=kind,
                content_type=content_type, step=step, progress=bars,
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
        with connect(url) as client, _progress(artifact_id[:12]) as bars:
            artifact_id = _artifact_id(client, artifact_id)
            written = fetch(client.api, artifact_id, output, overwrite=force, progress=bars)
    except KeyboardInterrupt:
        click.echo("interrupted: run the same command again to resume the download", err=True)
        raise SystemExit(130) from None
    click.echo(f"downloaded artifact {artifact_id} to {written} ({human(written.stat().st_size)})")


@artifacts.command("list")
@click.argument("run_id")
@_url
@json_option
def list_artifacts(run_id: str, url: str | None, as_json: bool) -> None:
    """The artifacts of a run (id as printed: any unique prefix)."""
    from safeboard.cli.output import json_lines, table

    with connect(url) as client:
        items = list(client.artifacts(_run_id(client, run_id)))
    if as_json:
        json_lines(item.to_json() for item in items)
        return
    rows = []
    for item in items:
        state = item.state.value
        if state != "ready":
            state += f" ({human(item.received)})"
        step = "" if item.step is None else str(item.step)
        created = item.created_at.isoformat(sep=" ", timespec="minutes")[:16]
        rows.append([item.id, item.name, item.kind.value, human(item.size), state, step, created])
    table(
        ["artifact", "name", "kind", "size", "state", "step", "created"], rows,
        no_wrap=["artifact", "size", "created"], width=160, empty="no artifacts",
    )  # fmt: skip


@artifacts.command("rm")
@click.argument("artifact_id")
@click.option("--yes", is_flag=True, help="Do not ask.")
@_url
def remove(artifact_id: str, yes: bool, url: str | None) -> None:
    """Delete an artifact (its bytes too)."""
    with connect(url) as client:
        artifact = client.artifact(_artifact_id(client, artifact_id))
        if not yes:
            if sys.stdin is None or not sys.stdin.isatty():
                raise click.ClickException("deleting needs --yes when not asked at a terminal")
            click.confirm(
                f"delete {artifact.name!r} ({human(artifact.size)}) of run {artifact.run_id}?",
                abort=True,
            )
        client.delete_artifact(artifact.id)
    click.echo(f"deleted artifact {artifact.id} ({artifact.name})")
