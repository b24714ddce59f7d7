"""Which server, which key, and how to trust it.

Resolution order: explicit arguments, then ``SAFEBOARD_URL`` with ``SAFEBOARD_API_KEY``,
then the key stored by ``safeboard login`` (the newest one), then the discovery file that
the local server of the same OS user writes in its data directory. Keys stored by ``login``
live in ``<config_dir>/credentials/`` (directory 0700, files 0600), one per server.
"""

from __future__ import annotations

import hmac
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from safeboard.client.cleartext import require_private_transport
from safeboard.client.config import config_dir, private_dir, server_origin, write_private
from safeboard.client.fingerprint import parse_fingerprint
from safeboard.client.http import ApiClient
from safeboard.client.local_socket import LocalSocketTransport
from safeboard.client.trust import CertificateInfo, TrustStore, context_for, pinned_context
from safeboard.errors import BadRequest, ConfigError, SafeboardError, Unauthenticated
from safeboard.userdirs import (
    API_KEY_ENV,
    DATA_DIR_ENV,
    URL_ENV,
    default_data_dir,
    read_private_json,
)

__all__ = [
    "API_KEY_ENV",
    "CA_CERT_ENV",
    "DATA_DIR_ENV",
    "DISCOVERY_FILE",
    "URL_ENV",
    "CredentialStore",
    "ServerAccess",
    "StoredKey",
    "default_data_dir",
    "read_discovery",
    "resolve_server",
]

CA_CERT_ENV = "SAFEBOARD_CA_CERT"
DISCOVERY_FILE = "discovery.json"


@dataclass(frozen=True)
class StoredKey:
    """An API key minted by ``safeboard login`` for this device."""

    url: str
    username: str
    key_id: str
    key_name: str
    api_key: str = field(repr=False)
    saved_at: str = ""


class CredentialStore:
    """Per-server API keys stored by ``safeboard login``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir() / "credentials"

    def path_for(self, url: str) -> Path:
        slug = "".join(c if c.isalnum() or c in ".-" else "_" for c in server_origin(url))
        return self.directory / f"{slug}.json"

    def _load(self, path: Path) -> StoredKey | None:
        data = read_private_json(path)
        if data is None:
            return None
        try:
            return StoredKey(**{k: str(data[k]) for k in StoredKey.__dataclass_fields__})
        except KeyError:
            raise ConfigError(f"cannot read {path}: log in again") from None

    def get(self, url: str) -> StoredKey | None:
        key = self._load(self.path_for(url))
        return key if key is not None and key.url == server_origin(url) else None

    def latest(self) -> StoredKey | None:
        """The key of the most recent login, if any."""
        keys = [key for path in self.directory.glob("*.json") if (key := self._load(path))]
        return max(keys, key=lambda key: key.saved_at, default=None)

    def save(self, key: StoredKey) -> Path:
        private_dir(self.directory.parent)
        private_dir(self.directory)
        path = self.path_for(key.url)
        record = {name: getattr(key, name) for name in StoredKey.__dataclass_fields__}
        record["saved_at"] = datetime.now(UTC).isoformat(timespec="microseconds")
        write_private(path, (json.dumps(record, indent=2) + "\n").encode())
        return path

    def delete(self, url: str) -> StoredKey | None:
        """Forget the key stored for ``url``; returns what was stored."""
        key = self.get(url)
        self.path_for(url).unlink(missing_ok=True)
        return key


@dataclass(frozen=True)
class ServerAccess:
    """Where the server is, the key to use (None: sign in first) and how to trust it."""

    url: str
    api_key: str | None = field(repr=False)
    verify: ssl.SSLContext | bool = field(repr=False)
    source: str  # "arguments", "environment", "login" or "discovery"
    # The local server's Unix socket (from its discovery file): requests go through it.
    local_socket: Path | None = None
    # The data directory whose discovery file gave the key (source "discovery").
    discovery_dir: Path | None = None
    # A TLS server's plain socket beside it (datadir.PLAIN_SOCKET): requests go through it.
    plain_socket: Path | None = None

    def __post_init__(self) -> None:
        # Refused here, before a run or a command starts, and again by ApiClient. Through
        # the local server's Unix socket nothing crosses a network, whatever the URL says.
        if self.local_socket is None:
            require_private_transport(self.url)

    def client(
        self, *, transport: httpx.BaseTransport | None = None, renewing: bool = False
    ) -> ApiClient:
        """A client with this access's key. ``renewing`` (the CLI's long follows): when the
        key came from the local server's discovery file, a 401 makes the client read the
        file again and, if it holds another key now, send the request once more with it."""
        if transport is None and self.plain_socket is not None:
            transport = LocalSocketTransport(self.plain_socket, plain=True, verify=self.verify)
        elif transport is None and self.local_socket is not None:
            transport = LocalSocketTransport(self.local_socket, verify=self.verify)
        api = ApiClient(self.url, self.api_key, verify=self.verify, transport=transport)
        if renewing and self.source == "discovery":
            api.renew_key = _Renewal(self)
        return api

    def require_key(self, error: type[SafeboardError] = Unauthenticated) -> None:
        """Raise ``error`` naming the fix when this access holds no key. A server that does
        not answer at the URL is said first, since a login there could not help yet: the
        health check (no credential sent) raises that, or a wrong scheme, or an untrusted
        certificate, each with its own fix. Any HTTP answer, an error too (another
        service, a proxy), means something answers there: the missing key is said."""
        if self.api_key is not None:
            return
        with self.client() as api:
            api.answers("/healthz")
        raise error(f"no API key stored for {self.url}: run `safeboard login {self.url}`")

    def reloaded(self) -> ServerAccess | None:
        """The local server's discovery file read again, when this access's key came from it
        and the file now holds another key (the server minted a new one at a restart: the
        old one was revoked, expired or past half its life); None otherwise, also when the
        file is gone or unreadable. A client that gets 401 with a discovery key calls this
        and, given a new access, retries with ``reloaded.client()``."""
        if self.source != "discovery" or self.discovery_dir is None:
            return None
        try:
            fresh = read_discovery(self.discovery_dir)
        except ConfigError:
            return None
        if fresh is None or fresh.api_key is None:
            return None
        old = (self.api_key or "").encode()
        return None if hmac.compare_digest(fresh.api_key.encode(), old) else fresh


class _Renewal:
    """The discovery key written since the last one this client was given, or None."""

    def __init__(self, access: ServerAccess) -> None:
        self.access = access

    def __call__(self) -> str | None:
        fresh = self.access.reloaded()
        if fresh is None:
            return None
        self.access = fresh
        return fresh.api_key


def read_discovery(data_dir: Path) -> ServerAccess | None:
    """The local server's discovery file: its URL, key and TLS (its CA, and its fingerprint)."""
    path = data_dir / DISCOVERY_FILE
    data = read_private_json(path)
    if data is None or not isinstance(data.get("url"), str):
        return None
    url = server_origin(str(data["url"]))
    key = data.get("api_key")
    verify: ssl.SSLContext | bool = True
    tls = data.get("tls")
    if url.startswith("https:") and isinstance(tls, dict):
        try:
            fingerprint = parse_fingerprint(str(tls.get("fingerprint")))
        except BadRequest:
            raise ConfigError(
                f"{path} holds no valid TLS fingerprint: restart the server"
            ) from None
        hint = f"It does not match {path}: restart the local server"
        anchor = tls.get("ca_cert") or tls.get("cert")
        if not anchor:
            raise ConfigError(f"{path} names no CA certificate: restart the server")
        pem = _read_anchor(Path(str(anchor)))
        if tls.get("ca_cert"):  # its generated CA: a leaf renewed by a restart still verifies
            ca = _first_certificate(pem, Path(str(anchor)))
            verify = pinned_context(
                url, ca.fingerprint, anchor_pem=ca.pem, changed_hint=hint, pins_ca=True
            )
        else:
            verify = pinned_context(url, fingerprint, anchor_pem=pem, changed_hint=hint)
    socket, plain = data.get("socket"), data.get("plain_socket")
    return ServerAccess(
        url,
        key if isinstance(key, str) else None,
        verify,
        "discovery",
        Path(socket) if isinstance(socket, str) and socket else None,
        data_dir,
        # Only beside the TLS socket: a client goes nowhere the discovery file does not name.
        Path(plain) if isinstance(plain, str) and plain and socket else None,
    )


def _read_anchor(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the server certificate {path}: {exc}") from None


def _first_certificate(pem: str, path: Path) -> CertificateInfo:
    try:
        return CertificateInfo.from_pem(pem)
    except ValueError:
        raise ConfigError(f"{path} holds no PEM certificate: restart the local server") from None


def resolve_server(
    url: str | None = None,
    api_key: str | None = None,
    *,
    ca_cert: Path | None = None,
    environ: Mapping[str, str] | None = None,
    store: CredentialStore | None = None,
    trust: TrustStore | None = None,
    data_dir: Path | None = None,
) -> ServerAccess:
    """Which server and which key to use, and how to trust it (see the module's docstring).

    ``source`` names where the key came from (or the address, when there is no key: then
    ``api_key`` is None, and the caller signs in first). Trust: ``ca_cert`` (or
    ``$SAFEBOARD_CA_CERT``), else the server's pin, else the discovery file's TLS for the
    local server, else the system's CAs."""
    env = os.environ if environ is None else environ
    store = store or CredentialStore()
    local_dir = data_dir or default_data_dir(env)
    env_url, env_key = env.get(URL_ENV) or None, env.get(API_KEY_ENV) or None
    target, source = (url, "arguments") if url else (env_url, "environment")
    if target is None:
        if env_key:
            raise ConfigError(f"{API_KEY_ENV} is set but {URL_ENV} is not: set both")
        stored = store.latest()
        if stored is None:
            local = read_discovery(local_dir)
            if local is None:
                raise ConfigError(
                    "no safeboard server configured: run `safeboard login URL`, set "
                    f"{URL_ENV} and {API_KEY_ENV}, or start `safeboard server` on this machine"
                )
            if api_key is None:
                return local
            return ServerAccess(
                local.url, api_key, local.verify, "arguments", local.local_socket,
                plain_socket=local.plain_socket,
            )  # fmt: skip
        target = stored.url
    origin = server_origin(target)
    key = api_key
    if key is None and env_key and env_url and server_origin(env_url) == origin:
        key, source = env_key, "environment"
    if key is None and (stored := store.get(origin)) is not None:
        key, source = stored.api_key, "login"
    ca_file = ca_cert or (Path(env[CA_CERT_ENV]) if env.get(CA_CERT_ENV) else None)
    trust = trust or TrustStore()
    if ca_file is None and trust.get(origin) is None:
        local = read_discovery(local_dir)
        if local is not None and local.url == origin:
            if key is None and local.api_key:
                key, source = local.api_key, "discovery"
            reload_from = local_dir if source == "discovery" else None
            return ServerAccess(
                origin, key, local.verify, source, local.local_socket, reload_from,
                plain_socket=local.plain_socket,
            )  # fmt: skip
    return ServerAccess(origin, key, context_for(origin, ca_file=ca_file, store=trust), source)
