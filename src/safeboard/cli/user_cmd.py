"""``safeboard user ...``: accounts, on this machine's server data."""

from __future__ import annotations

from pathlib import Path

import click

from safeboard.cli.options import data_dir_option, json_option, resolve_data_dir
from safeboard.cli.output import count

__all__ = ["user"]

_ROLES = click.Choice(["admin", "member"])


@click.group()
def user() -> None:
    """Manage accounts (run on the server's machine, as the owner of its data directory)."""


def _print_users(rows: list[dict[str, object]], as_json: bool) -> None:
    from safeboard.cli.output import json_lines, table

    if as_json:
        json_lines(rows)
        return
    table(
        ["user", "role", "active", "password", "created"],
        [[str(row["username"]), str(row["role"]), "yes" if row["is_active"] else "no",
          "set" if row["has_password"] else "-", str(row["created_at"])[:16]] for row in rows],
        no_wrap=["created"], empty="no accounts",
    )  # fmt: skip


def _invite_line(local: object, username: str) -> str:
    from safeboard.cli.local import Local, cli_actor
    from safeboard.client import paths

    assert isinstance(local, Local)  # noqa: S101
    _, token = local.users.invite(username, actor=cli_actor())
    hours = int(local.users.invite_lifetime.total_seconds() // 3600)
    link = local.base_url().rstrip("/") + paths.invite_page(token)
    return f"invitation for {username} (single use, {hours} hours): {link}"


@user.command("add")
@data_dir_option
@click.argument("username")
@click.option("--role", type=_ROLES, default="member", show_default=True)
@click.option("--display-name", default="")
@click.option("--invite", is_flag=True, help="Also print an invitation link.")
def add(data_dir: Path | None, username: str, role: str, display_name: str, invite: bool) -> None:
    """Add an account (no password yet: invite the person, or set one)."""
    from safeboard.auth.permissions import Role
    from safeboard.cli.local import cli_actor, open_local

    with open_local(resolve_data_dir(data_dir)) as local:
        created = local.users.add(
            username, role=Role(role), display_name=display_name, actor=cli_actor()
        )
        click.echo(f"added {created.username} ({created.role.value})")
        if invite:
            click.echo(_invite_line(local, created.username))


@user.command("invite")
@data_dir_option
@click.argument("username")
def invite(data_dir: Path | None, username: str) -> None:
    """Print a one-time link with which USERNAME sets a password; earlier links stop working."""
    from safeboard.cli.local import open_local

    with open_local(resolve_data_dir(data_dir)) as local:
        click.echo(_invite_line(local, username))


@user.command("list")
@data_dir_option
@json_option
def list_(data_dir: Path | None, as_json: bool) -> None:
    """List accounts."""
    from dataclasses import asdict

    from safeboard.cli.local import open_local

    with open_local(resolve_data_dir(data_dir)) as local:
        rows = [{**asdict(u), "role": u.role.value} for u in local.users.list_all()]
    _print_users(rows, as_json)


def _set_active(data_dir: Path | None, username: str, active: bool) -> None:
    from safeboard.cli.local import cli_actor, open_local

    with open_local(resolve_data_dir(data_dir)) as local:
        changed = local.users.set_active(username, active, actor=cli_actor())
    state = "enabled" if changed.is_active else "disabled (sessions ended, keys stopped)"
    click.echo(f"{changed.username} {state}")


@user.command("disable")
@data_dir_option
@click.argument("username")
def disable(data_dir: Path | None, username: str) -> None:
    """Disable an account: its sessions end at once, its API keys stop within a second (the
    running server trusts a key it verified for that long)."""
    _set_active(data_dir, username, False)


@user.command("delete")
@data_dir_option
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
def delete(data_dir: Path | None, username: str, yes: bool) -> None:
    """Delete an account: its sessions end at once and its keys within a second, its runs
    stay with their projects, the audit log keeps its name. Never the last active admin."""
    from safeboard.cli.local import cli_actor, open_local

    if not yes:
        click.confirm(f"Delete the account {username}?", abort=True, err=True)
    with open_local(resolve_data_dir(data_dir)) as local:
        done = local.users.delete(username, actor=cli_actor())
    click.echo(f"{username} deleted ({count(done['sessions_ended'], 'session')} ended, "
               f"{count(done['keys_revoked'], 'key')} revoked)")  # fmt: skip


@user.command("enable")
@data_dir_option
@click.argument("username")
def enable(data_dir: Path | None, username: str) -> None:
    """Enable a disabled account."""
    _set_active(data_dir, username, True)


@user.command("set-password")
@data_dir_option
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password(data_dir: Path | None, username: str, password_stdin: bool) -> None:
    """Set USERNAME's password (asked twice, not echoed); their sessions end."""
    from safeboard.cli.local import cli_actor, open_local
    from safeboard.cli.password_input import read_password

    password = read_password("new password", password_stdin, twice=True)
    with open_local(resolve_data_dir(data_dir)) as local:
        ended = local.users.set_password(username, password, actor=cli_actor())
    click.echo(f"password set for {username}; {count(ended, 'session')} ended")


@user.command("set-role")
@data_dir_option
@click.argument("username")
@click.argument("role", type=_ROLES)
def set_role(data_dir: Path | None, username: str, role: str) -> None:
    """Make USERNAME an admin or a member (the last active admin stays an admin)."""
    from safeboard.auth.permissions import Role
    from safeboard.cli.local import cli_actor, open_local

    with open_local(resolve_data_dir(data_dir)) as local:
        changed = local.users.set_role(username, Role(role), actor=cli_actor())
    click.echo(f"{changed.username} is now {changed.role.value}")


@user.command("sessions")
@data_dir_option
@click.argument("username")
@json_option
def sessions(data_dir: Path | None, username: str, as_json: bool) -> None:
    """List USERNAME's sessions."""
    from safeboard.cli.local import open_local
    from safeboard.cli.output import json_lines, table

    with open_local(resolve_data_dir(data_dir)) as local:
        found = local.users.sessions(username)
    rows = [
        {
            "created_at": s.created_at.isoformat(),
            "last_seen_at": s.last_seen_at.isoformat(),
            "expires_at": s.expires_at.isoformat(),
            "address": s.address,
            "user_agent": s.user_agent,
        }
        for s in found
    ]
    if as_json:
        json_lines(rows)
        return
    table(
        ["created", "last seen", "expires", "address", "browser"],
        [[r["created_at"][:16].replace("T", " "), r["last_seen_at"][:16].replace("T", " "),
          r["expires_at"][:16].replace("T", " "), r["address"], r["user_agent"]] for r in rows],
        no_wrap=["created", "last seen", "expires"], empty=f"{username} has no sessions",
    )  # fmt: skip


@user.command("revoke-sessions")
@data_dir_option
@click.argument("username")
def revoke_sessions(data_dir: Path | None, username: str) -> None:
    """End every session of USERNAME."""
    from safeboard.cli.local import cli_actor, open_local

    with open_local(resolve_data_dir(data_dir)) as local:
        ended = local.users.revoke_sessions(username, actor=cli_actor())
    click.echo(f"{count(ended, 'session')} of {username} ended")
