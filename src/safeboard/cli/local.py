"""Commands that act on this machine's server data directly (as the operator who owns the
data directory), without a running server: accounts and keys."""

from __future__ import annotations

import getpass
import json
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from safeboard.account_services import build_accounts
from safeboard.accounts.api_keys import ApiKeyService
from safeboard.accounts.users import UserService
from safeboard.auth.permissions import CredentialKind, Scope
from safeboard.auth.principal import Principal
from safeboard.datadir import ensure_data_dir
from safeboard.errors import ConfigError
from safeboard.secret_store import ensure_secrets
from safeboard.settings import Settings, load_settings
from safeboard.storage import open_database

__all__ = ["Local", "cli_actor", "open_local", "require_server_data"]

_ELSEWHERE = (
    "these commands run on the server's machine (as the account that runs it); from "
    "another machine, get a key with `safeboard login URL` or the dashboard's account page; "
    "on the server's machine, run safeboard db upgrade or start the server first"
)


def _configured_database(directory: Path) -> str | None:
    """The database URL set in the environment or ``safeboard.toml``, if any (read
    without loading the settings, which would need the server's secrets)."""
    for name, value in os.environ.items():
        if name.upper() == "SAFEBOARD__DATABASE__URL" and value:
            return value
    try:
        with (directory / "safeboard.toml").open("rb") as handle:
            url = tomllib.load(handle).get("database", {}).get("url")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        return None
    return url if isinstance(url, str) and url else None


def require_server_data(directory: Path) -> None:
    """Refuse, creating nothing, unless ``directory`` holds a server's data: its SQLite
    database, or a configured database elsewhere (PostgreSQL). On a teammate's machine
    the local commands would otherwise make an empty server of their own."""
    url = _configured_database(directory)
    if url is not None and not url.startswith("sqlite"):
        return
    database = directory / "safeboard.db"
    if url is not None:
        database = Path(url.split(":///", 1)[-1])
    if not database.is_file():
        raise ConfigError(f"no safeboard server data in {directory}: {_ELSEWHERE}")


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


class Accounts(Protocol):
    """What a local command acts on: the server's settings, users and keys, wired as a
    running server wires them (``build_accounts``; ``build_services`` has them too)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def users(self) -> UserService: ...
    @property
    def keys(self) -> ApiKeyService: ...


@dataclass(frozen=True)
class Local:
    """The server's accounts and keys, for a command acting as the operator."""

    services: Accounts

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def users(self) -> UserService:
        return self.services.users

    @property
    def keys(self) -> ApiKeyService:
        return self.services.keys

    def principal(self, username: str) -> Principal:
        """Act as ``username`` (the operator owns the data directory, hence every account)."""
        user = self.users.get(username)
        return Principal(
            user_id=user.id,
            username=user.username,
            role=user.role,
            credential=CredentialKind.SESSION,
            scope=Scope.ADMIN,
        )

    def base_url(self) -> str:
        """The server's address for links handed to others (invitations): its public URL,
        else as its last start advertised it, else as the settings say (a wildcard bind
        gives the machine's name, never 127.0.0.1)."""
        from safeboard.server.bootstrap import DISCOVERY_FILE, advertised_url  # invites only

        if self.settings.server.public_url:
            return self.settings.server.public_url
        path = self.settings.data_dir / DISCOVERY_FILE
        try:
            return str(json.loads(path.read_text())["public_url"])
        except (OSError, ValueError, KeyError, TypeError):
            return advertised_url(self.settings)


@contextmanager
def open_local(data_dir: Path) -> Iterator[Local]:
    """The server's accounts and keys in ``data_dir``; ConfigError, creating nothing,
    when it holds no server (require_server_data)."""
    require_server_data(data_dir.expanduser().resolve())
    directory = ensure_data_dir(data_dir)
    ensure_secrets(directory)
    settings = load_settings(directory)
    engine = open_database(
        settings.database_url, busy_timeout_ms=settings.database.sqlite_busy_timeout_ms
    )
    try:
        yield Local(build_accounts(settings, engine))
    finally:
        engine.dispose()
