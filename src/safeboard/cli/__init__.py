"""The ``safeboard`` command. Each group lives in its own module, imported only when that
group runs (cli/lazy.py), and heavy imports are deferred to the command that needs them."""

from __future__ import annotations

import os
import sys
import traceback

import click

from safeboard import __version__
from safeboard.cli.lazy import LazyGroup
from safeboard.errors import SafeboardError

__all__ = ["cli", "main"]

# Each command's module, imported only when that command runs (or for --help).
COMMANDS = {
    "agent": "safeboard.cli.agent_cmd:agent",
    "artifacts": "safeboard.cli.artifacts_cmd:artifacts",
    "audit": "safeboard.cli.audit_cmd:audit",
    "backup": "safeboard.cli.backup_cmd:backup",
    "config": "safeboard.cli.config_cmd:config",
    "db": "safeboard.cli.db_cmd:db",
    "doctor": "safeboard.cli.doctor_cmd:doctor",
    "grant": "safeboard.cli.grant_cmd:grant",
    "import": "safeboard.cli.import_cmd:import_group",
    "key": "safeboard.cli.key_cmd:key",
    "login": "safeboard.cli.login_cmd:login",
    "logout": "safeboard.cli.login_cmd:logout",
    "projects": "safeboard.cli.runs_cmd:projects",
    "restore": "safeboard.cli.backup_cmd:restore",
    "revoke": "safeboard.cli.grant_cmd:revoke",
    "runs": "safeboard.cli.runs_cmd:runs",
    "secrets": "safeboard.cli.secrets_cmd:secrets",
    "server": "safeboard.cli.server_cmd:server",
    "sync": "safeboard.cli.sync_cmd:sync",
    "task": "safeboard.cli.task_cmd:task",
    "tensorboard": "safeboard.cli.tensorboard_cmd:tensorboard",
    "tls": "safeboard.cli.tls_cmd:tls",
    "user": "safeboard.cli.user_cmd:user",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="safeboard")
def cli() -> None:
    """safeboard: experiment tracking and training server, secure by default."""


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
    except KeyboardInterrupt:  # before click's own handling began (an import, say)
        click.echo("aborted", err=True)
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
