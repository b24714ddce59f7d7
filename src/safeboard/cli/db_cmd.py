"""``safeboard db upgrade | current``."""

from __future__ import annotations

from pathlib import Path

import click

from safeboard.cli.options import data_dir_option, resolve_data_dir

__all__ = ["db"]


@click.group()
def db() -> None:
    """Database schema migrations."""


@db.command()
@data_dir_option
@click.option("--database-url", default=None, help="SQLAlchemy URL (default: from settings).")
def upgrade(data_dir: Path | None, database_url: str | None) -> None:
    """Apply pending migrations (the server also does this at start)."""
    from safeboard.datadir import ensure_data_dir
    from safeboard.secret_store import ensure_secrets
    from safeboard.settings import load_settings
    from safeboard.storage import create_engine, current_revision, open_database

    directory = ensure_data_dir(resolve_data_dir(data_dir))
    ensure_secrets(directory)
    overrides = {"database": {"url": database_url}} if database_url else {}
    url = load_settings(directory, **overrides).database_url
    probe = create_engine(url)
    try:
        before = current_revision(probe)
    except Exception:  # noqa: BLE001  (open_database below explains what is wrong)
        before = None
    finally:
        probe.dispose()
    engine = open_database(url)
    try:
        after = current_revision(engine)
    finally:
        engine.dispose()
    click.echo(f"schema at {after}" + (f" (was {before})" if before != after else " (up to date)"))
