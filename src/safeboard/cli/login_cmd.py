"""``safeboard login URL`` and ``safeboard logout URL`` (S13).

Login first decides, sending nothing, whether to trust the server's certificate
(``login_trust``: the system's CAs, ``--ca-cert``, the CA or certificate pinned at an earlier
login, or one the person confirms by its fingerprint, ``--fingerprint`` without a terminal).
Then a key stored for this server is checked (the caller's session): still valid, it is
kept and no password is asked (after a CA change, re-trusting is all it takes). Otherwise
login asks for the password, signs in, mints an API key for this device and stores it (0600).
"""

from __future__ import annotations

import contextlib
import ssl
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import click

from safeboard.cli.login_trust import trusted_context
from safeboard.cli.password_input import read_password
from safeboard.errors import BadRequest, Forbidden, NotFound, SafeboardError, Unauthenticated
from safeboard.vocabulary import KeyScope

if TYPE_CHECKING:  # the client (httpx, cryptography) loads only when a command runs
    from safeboard.client import ApiClient, StoredKey

__all__ = ["login", "logout"]

_KEY_SCOPE = "write"


def _credentials(username: str | None, password_stdin: bool) -> tuple[str, str]:
    import getpass

    tty = sys.stdin.isatty()
    if username is None:
        try:
            default = getpass.getuser()
        except (OSError, KeyError):
            default = None
        if tty and not password_stdin:
            username = str(click.prompt("username", default=default))
        elif default is None:
            raise BadRequest("cannot tell your user name: pass --username")
        else:
            username = default
    password = read_password("password", password_stdin)
    if not password:
        raise BadRequest("empty password")
    return username, password


@click.command()
@click.argument("url")
@click.option(
    "--fingerprint",
    metavar="SHA256:..",
    help="Trust the certificate with this SHA-256 fingerprint (`safeboard tls show` on the "
    "server prints it). Required without a terminal when the system does not trust it.",
)
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trust certificates issued by this CA (PEM) instead of the system's CAs.",
)
@click.option("--username", help="Account name (default: asked, or your OS user name).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--key-name", help='Name of the API key (default: "<hostname> (safeboard login)").')
@click.option(
    "--scope",
    type=click.Choice([s.value for s in KeyScope if s is not KeyScope.METRICS]),
    default=None,
    help="Scope of the key to store (default write: log runs). admin: also manage grants "
    "and, for admins, the server. Given, it always signs in and replaces the stored key.",
)
def login(
    url: str,
    fingerprint: str | None,
    ca_cert: Path | None,
    username: str | None,
    password_stdin: bool,
    key_name: str | None,
    scope: str | None,
) -> None:
    """Trust URL's certificate, sign in, and store an API key for this device."""
    import socket

    from safeboard.client import (
        ApiClient,
        CredentialStore,
        StoredKey,
        TrustStore,
        require_private_transport,
        server_origin,
    )

    origin = server_origin(url)
    require_private_transport(origin)  # before a password is asked for
    trust, store = TrustStore(), CredentialStore()
    verify: ssl.SSLContext | bool = True
    if origin.startswith("https:"):
        verify = trusted_context(origin, fingerprint, ca_cert, trust)
    previous = store.get(origin)
    mine = previous is not None and username in (None, previous.username)
    # The stored key is sent only now that the server is trusted.
    if scope is None and previous is not None and mine and _still_valid(origin, previous, verify):
        click.echo(
            f"the API key stored for {origin} (id {previous.key_id}, user "
            f"{previous.username}) is still valid: kept it, no password needed"
        )
        return
    username, password = _credentials(username, password_stdin)
    name = key_name or f"{socket.gethostname()[:70] or 'this device'} (safeboard login)"
    with ApiClient(origin, verify=verify) as api:
        csrf = _sign_in(api, username, password)
        key = api.post(
            _paths().keys(), json={"name": name, "scope": scope or _KEY_SCOPE}, headers=csrf
        )
        created = key.json()
        saved = StoredKey(origin, username, str(created["id"]), name, str(created["token"]))
        path = store.save(saved)
        click.echo(f"signed in to {origin} as {username}")
        granted = created["scope"]  # the server's word: what the key can do
        click.echo(f"API key {name!r} (id {saved.key_id}, scope {granted}) stored in {path}")
        if previous is not None and previous.key_id != saved.key_id:
            _warn(_revoke(api, previous, "the previous key of this device", csrf), previous)
        _sign_out(api, csrf)  # the key is what stays


def _still_valid(origin: str, key: StoredKey, verify: ssl.SSLContext | bool) -> bool:
    """True when the server accepts ``key`` as its user's (a GET of the caller's session)."""
    from safeboard.client import ApiClient

    try:
        with ApiClient(origin, key.api_key, verify=verify) as api:
            session = api.get(_paths().session()).json()
    except Unauthenticated:
        return False  # revoked, expired, or minted by another server: sign in again
    user = session.get("user") if isinstance(session, dict) else None
    return isinstance(user, dict) and user.get("username") == key.username


def _sign_in(api: ApiClient, username: str, password: str) -> dict[str, str]:
    """A session on ``api`` (its cookie in the client); the headers its requests need:
    the session's binding (the cookie alone is not enough) and the CSRF token."""
    body = {"username": username, "password": password}
    session = api.post(_paths().sign_in(), json=body).json()
    return {
        "X-Safeboard-Binding": str(session["binding"]),
        "X-CSRF-Token": str(session["csrf_token"]),
    }


def _sign_out(api: ApiClient, csrf: dict[str, str]) -> None:
    with contextlib.suppress(SafeboardError):
        api.post(_paths().sign_out(), headers=csrf)


def _revoke(
    api: ApiClient, key: StoredKey, what: str, headers: dict[str, str] | None = None
) -> SafeboardError | None:
    """Revoke ``key`` on the server: None when done (or gone already), else the error."""
    try:
        api.delete(_paths().key(key.key_id), headers=headers)
    except NotFound:
        pass  # revoked already, or deleted by an admin
    except SafeboardError as exc:
        return exc
    click.echo(f"revoked {what} (id {key.key_id}) on the server")
    return None


def _warn(failed: SafeboardError | None, key: StoredKey) -> None:
    if failed is None:
        return
    why = "a key may not revoke itself" if isinstance(failed, Forbidden) else failed.message
    click.echo(
        f"warning: key {key.key_id} is still valid on the server ({why}); revoke it in the "
        f"dashboard, or on the server with: safeboard key revoke {key.key_id}",
        err=True,
    )


@click.command()
@click.argument("url")
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trust certificates issued by this CA (PEM) instead of the pin or system CAs.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def logout(url: str, ca_cert: Path | None, password_stdin: bool) -> None:
    """Revoke this device's API key for URL on the server and delete it here.

    A key may not manage keys (only a password sign-in may), so when the server refuses,
    logout signs in with your password to revoke it: asked on a terminal, or read with
    --password-stdin; otherwise it tells you how to revoke it."""
    from safeboard.client import (
        ApiClient,
        CredentialStore,
        PlainHttpRefused,
        require_private_transport,
        resolve_server,
        server_origin,
    )

    origin = server_origin(url)
    store = CredentialStore()
    stored = store.get(origin)
    if stored is None:
        click.echo(f"no API key stored for {origin}")
        return
    try:
        require_private_transport(origin)
    except PlainHttpRefused:  # a key stored for plain http:// (by hand, or an old version)
        path = store.path_for(origin)
        store.delete(origin)
        click.echo(
            f"deleted the API key for {origin} from {path} without sending it (plain http:// "
            f"off this machine); revoke key {stored.key_id} on the server (its account page)"
        )
        return
    verify = resolve_server(origin, stored.api_key, ca_cert=ca_cert).verify
    what = "this device's API key"
    with ApiClient(origin, stored.api_key, verify=verify) as api:
        failed = _revoke(api, stored, what)
    if isinstance(failed, Forbidden) and (password_stdin or sys.stdin.isatty()):
        click.echo(f"the key may not revoke itself: signing in as {stored.username} to revoke it")
        username, password = _credentials(stored.username, password_stdin)
        with ApiClient(origin, verify=verify) as api:
            csrf = _sign_in(api, username, password)
            failed = _revoke(api, stored, what, csrf)
            _sign_out(api, csrf)
    _warn(failed, stored)
    store.delete(origin)
    click.echo(f"deleted the API key for {origin} from {store.path_for(origin)}")


def _paths() -> ModuleType:
    """``safeboard.client.paths``, imported when a command talks to a server."""
    from safeboard.client import paths

    return paths
