"""``safeboard backup DEST`` and ``safeboard restore SRC --data-dir D`` (safeboard.backups)."""

from __future__ import annotations

from pathlib import Path

import click

from safeboard.cli.options import data_dir_option, resolve_data_dir
from safeboard.sizes import human_size

__all__ = ["backup", "restore"]


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@data_dir_option
@click.option("--database-url", default=None, help="SQLAlchemy URL (default: from settings).")
@click.option(
    "--exclude-secrets",
    is_flag=True,
    help="Leave out secrets.toml and the TLS files (a restore then makes new ones).",
)
@click.option("--pg-dump", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="pg_dump to use (default: the PATH's, else Debian's newest).")  # fmt: skip
def backup(
    dest: Path,
    data_dir: Path | None,
    database_url: str | None,
    exclude_secrets: bool,
    pg_dump: Path | None,
) -> None:
    """Write a consistent copy of this server to DEST (a new file, mode 0600), while it
    runs: the database, the artifact files, and the secrets and CA unless excluded."""
    from safeboard.backups import backup as take
    from safeboard.settings import load_settings

    directory = resolve_data_dir(data_dir)
    overrides = {"database": {"url": database_url}} if database_url else {}
    settings = load_settings(directory, **overrides)
    report = take(settings, dest.absolute(), secrets=not exclude_secrets, pg_dump=pg_dump)
    click.echo(
        f"backed up to {report.path}: {report.database} database, {report.files} artifact "
        f"files, {human_size(report.bytes)}"
    )
    if report.secrets:
        click.echo("it holds the server's secrets and CA key: keep it as safe as the server")


@click.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="A new or empty directory to restore into.")  # fmt: skip
@click.option("--database-url", default=None,
              help="PostgreSQL backups: an empty database to load the copy into.")  # fmt: skip
@click.option("--pg-restore", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="pg_restore to use (default: the PATH's, else Debian's newest).")  # fmt: skip
def restore(src: Path, data_dir: Path, database_url: str | None, pg_restore: Path | None) -> None:
    """Restore a backup into an empty data directory, checking every file's checksum and
    the audit log's hash chain; then start the server with --data-dir DIR."""
    from safeboard.backups import restore as put_back

    report = put_back(src, data_dir, database_url=database_url, pg_restore=pg_restore)
    click.echo(
        f"restored into {report.data_dir}: {report.database} database, {report.files} files; "
        f"audit log intact ({report.audit_entries} entries)"
    )
    for note in report.notes:
        click.echo(f"note: {note}")
