"""The accounts part of the composition root (``safeboard.services``): users and API keys,
wired as a running server wires them, in a module that imports nothing else of the server.

``build_services`` takes its users and keys from :func:`build_accounts`; the CLI's local
commands (``safeboard user ...``, ``safeboard key ...``, cli/local.py) take only these, and
so start without importing FastAPI, numpy, httpx and the other domains (about half of
such a command's time).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from safeboard.accounts.api_keys import ApiKeyService
from safeboard.accounts.passwords import PasswordHasher
from safeboard.accounts.users import UserService
from safeboard.projects import repository as project_queries
from safeboard.settings import Settings

__all__ = ["AccountServices", "build_accounts"]


@dataclass(frozen=True)
class AccountServices:
    """Users and their API keys on one engine, and the settings they were built with."""

    settings: Settings
    hasher: PasswordHasher  # shared with sign-in (AuthService), which checks passwords
    keys: ApiKeyService
    users: UserService


def build_accounts(settings: Settings, engine: sa.Engine) -> AccountServices:
    hasher = PasswordHasher(settings.auth)
    # Binding a key to a project asks projects, a higher domain, passed in here.
    keys = ApiKeyService(engine, settings, project_grants=project_queries.grant_in)
    # A user disabled, deleted or given another role: this process forgets the keys of his
    # that it verified (they are looked up again).
    users = UserService(engine, settings, hasher, keys_changed=keys.forget_user)
    return AccountServices(settings=settings, hasher=hasher, keys=keys, users=users)
