"""The ``safeboard`` command. Each group lives in its own module; heavy imports are deferred
to the command that needs them, so ``safeboard --help`` stays fast."""

from __future__ import annotations

import os
import sys
import traceback

import click

from safeboard import __version__
from safeboard.cli import (
    agent_cmd,
    artifacts_cmd,
    audit_cmd,
    backup_cmd,
    config_cmd,
    db_cmd,
    doctor_cmd,
    grant_cmd,
    import_cmd,
    key_cmd,
    login_cmd,
    runs_cmd,
    secrets_cmd,
    server_cmd,
    sync_cmd,
    task_cmd,
    tensorboard_cmd,
    tls_cmd,
    trash_cmd,
    user_cmd,
)
from safeboard.errors import SafeboardError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="safeboard")
def cli() -> None:
    """safeboard: experiment tracking and training server, secure by default."""


cli.add_command(server_cmd.server)
cli.add_command(config_cmd.config)
cli.add_command(secrets_cmd.secrets)
cli.add_command(tls_cmd.tls)
cli.add_command(db_cmd.db)
cli.add_command(doctor_cmd.doctor)
cli.add_command(user_cmd.user)
cli.add_command(key_cmd.key)
cli.add_command(audit_cmd.audit)
cli.add_command(backup_cmd.backup)
cli.add_command(backup_cmd.restore)
cli.add_command(sync_cmd.sync)
cli.add_command(import_cmd.import_group)
cli.add_command(runs_cmd.projects)
cli.add_command(runs_cmd.runs)
for command in (trash_cmd.delete_runs, trash_cmd.restore_run, trash_cmd.purge_run,
                trash_cmd.trash):  # fmt: skip
    runs_cmd.runs.add_command(command)
for command in (trash_cmd.retention, trash_cmd.rename_project, trash_cmd.delete_project,
                trash_cmd.restore_project, trash_cmd.purge_project):  # fmt: skip
    runs_cmd.projects.add_command(command)
cli.add_command(artifacts_cmd.artifacts)
cli.add_command(task_cmd.task)
cli.add_command(grant_cmd.grant)
cli.add_command(grant_cmd.revoke)
cli.add_command(login_cmd.login)
cli.add_command(login_cmd.logout)
cli.add_command(agent_cmd.agent)
cli.add_command(tensorboard_cmd.tensorboard)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Every failure ends as one line on stderr and a non-zero exit; a
    traceback only with ``SAFEBOARD_DEBUG=1``."""
    try:
        code = cli.main(args=argv, prog_name="safeboard", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        hint = ""
        if exc.ctx is not None:
            hint = f" (see: {exc.ctx.command_path} --help)"
        click.echo(f"safeboard: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"safeboard: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except SafeboardError as exc:
        click.echo(f"safeboard: error: {exc.message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001  (the promise: no traceback reaches a user)
        if os.environ.get("SAFEBOARD_DEBUG") == "1":
            traceback.print_exc()
        click.echo(
            f"safeboard: internal error ({type(exc).__name__}); rerun with SAFEBOARD_DEBUG=1 "
            "for details and please report it",
            err=True,
        )
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)
