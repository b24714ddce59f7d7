"""What every start does for the local story (S4, DESIGN "The local story"):

1. the admin account of the OS user who runs the server exists (made at first start,
   with no password);
2. a new startup token (single use, 15 minutes) is minted, every unused one from before
   dies, and its link is returned for printing and written to ``login-link`` (0600);
3. the local API key in the discovery file is kept while it is still good (scripts that
   run across a restart keep working), else a new one replaces it; the discovery file
   (0600) tells the SDK and CLI of the same OS user where the server is and how to trust it.
4. tasks' secrets sealed under an earlier ``task_secrets_key`` (before a
   ``safeboard secrets rotate``) are re-sealed under the current one.
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safeboard.accounts.repository import normalize_username
from safeboard.auth.permissions import CredentialKind, Role, Scope
from safeboard.auth.principal import Principal
from safeboard.datadir import write_private
from safeboard.errors import InvalidRequest
from safeboard.settings import Settings, is_loopback_host, is_wildcard_host

if TYPE_CHECKING:  # the CLI's local commands use os_admin_name: no app to import for it
    from safeboard.server.certificates import TlsMaterial
    from safeboard.services import Services

__all__ = [
    "DISCOVERY_FILE",
    "LOGIN_LINK_FILE",
    "Bootstrapped",
    "advertised_url",
    "bootstrap",
    "local_url",
]

LOGIN_LINK_FILE = "login-link"
DISCOVERY_FILE = "discovery.json"
_FALLBACK_ADMIN = "admin"
_ACTOR = "system:start"


@dataclass(frozen=True)
class Bootstrapped:
    admin: str
    login_link: str | None  # None when the OS user's account is disabled or not an admin
    discovery_path: Path

    def __repr__(self) -> str:
        return f"Bootstrapped(admin={self.admin!r}, discovery_path={self.discovery_path!r})"


def os_admin_name() -> str:
    try:
        return normalize_username(getpass.getuser())
    except (InvalidRequest, KeyError, OSError):
        return _FALLBACK_ADMIN


def local_url(settings: Settings) -> str:
    """The URL on which this machine reaches the server (loopback when the bind allows)."""
    scheme = "https" if settings.tls_on else "http"
    host = settings.server.host
    if is_wildcard_host(host) or is_loopback_host(host):
        host = "[::1]" if host == "::1" else "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.port}"


def advertised_url(settings: Settings, *, public: bool = True) -> str:
    """The URL others use to reach the server: ``server.public_url`` when set (and
    ``public``), else the machine's name for a bind on every interface (never 0.0.0.0 or
    127.0.0.1, which mean nothing on another machine), else the bound address."""
    if public and settings.server.public_url:
        return settings.server.public_url
    scheme = "https" if settings.tls_on else "http"
    host = settings.server.host
    if is_wildcard_host(host):
        fqdn = socket.getfqdn()
        host = socket.gethostname() if is_loopback_host(fqdn) else fqdn
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.port}"


def bootstrap(
    services: Services,
    tls: TlsMaterial | None,
    *,
    local_socket: Path | None = None,
    plain_socket: Path | None = None,
    import_socket: Path | None = None,
) -> Bootstrapped:
    """The start's accounts, link, key and discovery file, through the server's own
    services (the app's: ``services_of(app)``)."""
    settings, auth, keys = services.settings, services.auth, services.keys
    admin = services.users.ensure_admin(os_admin_name(), actor=_ACTOR)
    url = local_url(settings)
    link = None
    discovery: dict[str, object] = {
        "url": url,  # for this machine's SDK and CLI
        "public_url": advertised_url(settings),  # for links handed to others (invitations)
        "username": admin.username,
    }
    if local_socket is not None:  # local clients send the key only through it
        discovery["socket"] = str(local_socket)
    if plain_socket is not None:  # a TLS server's plain one beside it (datadir.PLAIN_SOCKET)
        discovery["plain_socket"] = str(plain_socket)
    if import_socket is not None:  # `safeboard import tensorboard` hands files over it
        discovery["import_socket"] = str(import_socket)
    path = settings.data_dir / DISCOVERY_FILE
    # Whatever the account's state, the startup link of an earlier start dies now.
    auth.void_startup_tokens()
    if admin.is_active and admin.role is Role.ADMIN:
        token = auth.mint_startup_token(admin.id)
        link = f"{settings.server.public_url or url}/login#token={token}"
        owner = Principal(
            user_id=admin.id,
            username=admin.username,
            role=admin.role,
            credential=CredentialKind.SESSION,
            scope=Scope.ADMIN,
        )
        discovery["api_key"] = keys.local_key(owner, _discovery_key(path), actor=_ACTOR)
    else:  # no admin to hold it: the local key of an earlier start dies too
        keys.revoke_local_keys(admin.id, actor=_ACTOR)
    write_private(settings.data_dir / LOGIN_LINK_FILE, f"{link or ''}\n".encode())
    if tls is not None:
        discovery["tls"] = {
            "fingerprint": tls.fingerprint,
            "ca_cert": str(tls.ca_path) if tls.ca_path else None,
            "cert": str(tls.cert_path),
        }
    write_private(path, (json.dumps(discovery, indent=2) + "\n").encode())
    services.task_secrets.reseal()  # after a rotation: under the current key from now on
    return Bootstrapped(admin.username, link, path)


def _discovery_key(path: Path) -> str | None:
    """The key an earlier start wrote to the discovery file, if it can be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = data.get("api_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None
