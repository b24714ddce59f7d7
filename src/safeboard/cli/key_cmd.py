"""``safeboard key create | list | revoke``: API keys, on this machine's server data."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

import click

from safeboard.cli.options import data_dir_option, json_option, resolve_data_dir
from safeboard.errors import BadRequest
from safeboard.vocabulary import KeyScope

__all__ = ["key"]


@click.group()
def key() -> None:
    """Manage API keys (sb_<id>_<secret>; only a hash is stored)."""


def _default_user() -> str:
    from safeboard.server.bootstrap import os_admin_name

    return os_admin_name()


@key.command("create")
@data_dir_option
@click.option("--name", required=True, help="What the key is for (shown in lists).")
@click.option("--user", "username", default=None, help="Owner (default: your OS user's account).")
@click.option(
    "--scope",
    type=click.Choice([scope.value for scope in KeyScope]),
    default=KeyScope.WRITE.value,
    show_default=True,
    help="write: log runs and metrics (as the dashboard's form); read: view only; admin; "
    "metrics: GET /metrics only, for Prometheus (admins).",
)
@click.option("--project-id", type=int, default=None, help="Restrict the key to one project.")
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=None,
    help="Lifetime in days (default: auth.api_key_days).",
)
@click.option("--never-expires", is_flag=True, help="No expiry (admins only).")
def create(
    data_dir: Path | None,
    name: str,
    username: str | None,
    scope: str,
    project_id: int | None,
    days: int | None,
    never_expires: bool,
) -> None:
    """Create a key and print it once. Store it now: it cannot be shown again."""
    from safeboard.auth.permissions import Scope
    from safeboard.cli.local import cli_actor, open_local

    with open_local(resolve_data_dir(data_dir)) as local:
        owner = local.principal(username or _default_user())
        info, token = local.keys.create(
            owner,
            name=name,
            scope=Scope(scope),
            project_id=project_id,
            days=days,
            never_expires=never_expires,
            address="cli",
            actor=cli_actor(),
        )
    expiry = info.expires_at.date().isoformat() if info.expires_at else "never"
    click.echo(f"key {info.id} for {owner.username} ({scope}, expires {expiry}):", err=True)
    click.echo(token)


@key.command("list")
@data_dir_option
@click.option("--user", "username", default=None, help="Whose keys (default: yours).")
@click.option("--all", "everyone", is_flag=True, help="Everyone's keys.")
@json_option
def list_(data_dir: Path | None, username: str | None, everyone: bool, as_json: bool) -> None:
    """List keys (never their secrets)."""
    from safeboard.cli.local import open_local
    from safeboard.cli.output import json_lines, table

    with open_local(resolve_data_dir(data_dir)) as local:
        viewer = local.principal(username or _default_user())
        keys = local.keys.list_keys(viewer, everyone=everyone)
        names = {u.id: u.username for u in local.users.list_all()}
    rows = [
        {
            "id": item.id,
            "name": item.name,
            "owner": names.get(item.user_id, "?"),
            "user_id": item.user_id,
            "kind": item.kind,
            "scope": item.scope.value,
            "project_id": item.project_id,
            "expires_at": _iso(item.expires_at),
            "last_used_at": _iso(item.last_used_at),
            "last_used_address": item.last_used_address,
            "revoked": item.revoked_at is not None,
        }
        for item in keys
    ]
    if as_json:
        json_lines(rows)
        return
    table(
        ["key", "name", "owner", "scope", "project", "expires", "last used", "state"],
        [[k.id, k.name, names.get(k.user_id, "?"), k.scope.value, str(k.project_id or "all"),
          k.expires_at.date().isoformat() if k.expires_at else "never",
          k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "never",
          "revoked" if k.revoked_at else "active"] for k in keys],
        no_wrap=["key", "scope", "expires", "state"], empty="no keys",
    )  # fmt: skip


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


KEY_ID_LENGTH = 12  # hex digits: the <id> of sb_<id>_<secret>
MIN_PREFIX = 4  # as git asks of a short id: a shorter one picks a key by chance
_KEY_ID = re.compile(r"[0-9a-f]+")
_LOOKS_LIKE = (
    f"a key id is the {KEY_ID_LENGTH} hex digits after sb_ (as `safeboard key list` prints "
    f"it), or at least its first {MIN_PREFIX}"
)


def _given_id(text: str) -> str:
    """The id part of sb_<id>_<secret>, <id> or a prefix of it, checked."""
    given = text.strip().removeprefix("sb_").split("_")[0].lower()
    if not given or not _KEY_ID.fullmatch(given) or len(given) > KEY_ID_LENGTH:
        raise BadRequest(f"{text!r} is not a key id: {_LOOKS_LIKE}")
    if len(given) < MIN_PREFIX:
        raise BadRequest(f"key id prefix {given!r} is too short to revoke by: {_LOOKS_LIKE}")
    return given


@key.command("revoke")
@data_dir_option
@click.argument("key_id")
@click.option("--yes", is_flag=True, help="Do not ask (a prefix is confirmed first).")
def revoke(data_dir: Path | None, key_id: str, yes: bool) -> None:
    """Revoke a key by id as printed (sb_<id>, the id, or a unique prefix of at least 4
    characters, confirmed first). Takes effect at once, on every replica."""
    from safeboard.cli.ids import pick
    from safeboard.cli.local import cli_actor, open_local

    given = _given_id(key_id)
    with open_local(resolve_data_dir(data_dir)) as local:
        actor = local.principal(_default_user())
        keys = {k.id: k for k in local.keys.list_keys(actor, everyone=True)}
        key_id = pick("key", given, sorted(i for i in keys if i.startswith(given)))
        if key_id != given and not yes:  # a prefix: say which key before revoking it
            if sys.stdin is None or not sys.stdin.isatty():
                raise click.ClickException(
                    f"{given!r} is a prefix of key {key_id}: give the whole id, or --yes, "
                    "when not asked at a terminal"
                )
            chosen = keys[key_id]
            click.confirm(f"revoke key {key_id} ({chosen.name!r})?", abort=True)
        local.keys.revoke(actor, key_id, address="cli", audit_actor=cli_actor())
    click.echo(f"key {key_id} revoked")
