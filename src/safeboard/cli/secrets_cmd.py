"""``safeboard secrets rotate``."""

from __future__ import annotations

from pathlib import Path

import click

from safeboard.cli.options import data_dir_option, resolve_data_dir

__all__ = ["secrets"]


@click.group()
def secrets() -> None:
    """Manage the server's generated secrets (secrets.toml)."""


@secrets.command()
@data_dir_option
def rotate(data_dir: Path | None) -> None:
    """Replace every secret in secrets.toml with a new random one.

    Restart the server afterwards. Sessions and signed links made with the old keys stop
    working; API keys are unaffected. Tasks' stored secrets stay readable: the replaced
    task_secrets_key is kept (task_secrets_previous_keys) and the next start re-encrypts
    them under the new one.
    """
    from safeboard.audit import service as audit
    from safeboard.audit.events import AuditAction
    from safeboard.cli.local import cli_actor
    from safeboard.datadir import ensure_data_dir
    from safeboard.errors import ConfigError
    from safeboard.secret_store import rotate_secrets
    from safeboard.settings import SECRETS_FILE, load_settings
    from safeboard.storage import open_database

    directory = ensure_data_dir(resolve_data_dir(data_dir))
    names = rotate_secrets(directory)
    click.echo(f"rotated {', '.join(names) or 'nothing'} in {directory / SECRETS_FILE}")
    try:
        engine = open_database(load_settings(directory).database_url)
    except ConfigError as exc:
        click.echo(f"not recorded in the audit log: {exc.message}", err=True)
    else:
        try:
            audit.record(
                engine,
                action=AuditAction.SECRETS_ROTATED,
                actor=cli_actor(),
                target=f"file:{SECRETS_FILE}",
                detail={"names": names},
            )
        finally:
            engine.dispose()
    click.echo("restart the server for the new secrets to take effect")
