"""The sections of the settings tree (``server``, ``tls``, ``auth``, ``database``,
``artifacts``, ``projects``, ``secure``): each a frozen model whose every field carries the
description that ``docs/settings.md`` is generated from. ``safeboard.settings`` assembles
them into ``Settings`` and loads it; import them from there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from safeboard.errors import ConfigError
from safeboard.hosts import NotAnOrigin, parse_origin

__all__ = [
    "GIB",
    "MAX_PREVIOUS_KEYS",
    "MIN_SECRET_BYTES",
    "ArtifactSettings",
    "AuthSettings",
    "DatabaseSettings",
    "ProjectSettings",
    "SecureSettings",
    "ServerSettings",
    "TlsSettings",
    "mask_url_password",
    "public_origin",
    "secret_weakness",
]


def _split_commas(value: Any) -> Any:
    """Let list settings be written ``a,b`` in the environment or on the command line."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """Where and how the HTTP server listens."""

    host: str = Field(
        "127.0.0.1",
        description="Address to bind. Anything but loopback turns TLS on (S1).",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port to bind. Default: 8443 with TLS, 8080 without.",
    )
    behind_proxy: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description=(
            "Addresses or CIDR ranges of reverse proxies whose X-Forwarded-For and "
            "X-Forwarded-Proto headers are trusted. Required to serve plain HTTP off loopback."
        ),
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Extra names the server answers to in the Host header, beyond loopback names, "
            "the machine's host name and the certificate's names (DNS-rebinding defence)."
        ),
    )
    public_url: str | None = Field(
        None,
        description=(
            "The address people use to reach this server, an http(s) origin without a path "
            "(`https://ml.example.com` or `https://gpu-box:8443`, as behind a proxy or a DNS "
            "name): printed in invitation links, the startup sign-in link and the dashboard's "
            "`safeboard login` hints, and accepted in the Host header. Default: the address "
            "the admin's browser uses, and for the CLI the machine's host name (bound to all "
            "interfaces) or the bound address."
        ),
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted on API routes; larger ones get 413.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Server log level."
    )
    request_head_timeout: float = Field(
        5.0,
        ge=0.5,
        le=120,
        description=(
            "Seconds a new connection has to finish its TLS handshake and send the complete "
            "head of its first request, and a kept-alive one to send the next head after a "
            "response; then it is closed (idle and slowloris clients). A request whose head "
            "arrived is not cut short."
        ),
    )
    max_connections: int = Field(
        4096,
        ge=16,
        description=(
            "Open client connections in all; more are closed as soon as they are accepted. "
            "Kept below the open-files limit, whose soft value is raised to the hard one at "
            "start."
        ),
    )
    max_connections_per_client: int = Field(
        256,
        ge=1,
        description=(
            "Open connections from one client address (an IPv6 /64 counts as one); more "
            "are closed as soon as they are accepted. Reverse proxies named in "
            "behind_proxy count only towards max_connections."
        ),
    )
    event_streams_per_user: int = Field(
        16,
        ge=1,
        le=10_000,
        description=(
            "Open live-update streams (server-sent events) one account may hold on one server "
            "process; one more gets 429 `too_many_streams`. Per replica: with several replicas "
            "an account may hold this many on each."
        ),
    )
    event_stream_recheck_seconds: float = Field(
        0.5,
        ge=0.05,
        le=0.9,
        description=(
            "How often each server re-checks, all at once, the credential, account and project "
            "grant behind every open live-update stream (a few indexed queries a round, however "
            "many streams are open). A revoked key, an ended session, a disabled account or a "
            "removed grant ends its streams within this interval plus one query: under 1 s."
        ),
    )

    min_free_disk_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description=(
            "Free space below which `GET /healthz` reports the disk of the data directory "
            "(or of the artifact store) as `low` and answers 503, so that a monitor warns "
            "before writes fail with 503 `disk_full`. 0: only a full disk is reported."
        ),
    )

    _split = field_validator("behind_proxy", "allowed_hosts", mode="before")(_split_commas)

    @field_validator("public_url")
    @classmethod
    def _origin(cls, url: str | None) -> str | None:
        return None if url is None or not url.strip() else public_origin(url.strip())

    @field_validator("behind_proxy")
    @classmethod
    def _narrow(cls, networks: list[IPvAnyNetwork]) -> list[IPvAnyNetwork]:
        """Trusting the whole Internet's X-Forwarded-For would undo S1 and S5."""
        for network in networks:
            if network.prefixlen < (8 if network.version == 4 else 32):
                raise ConfigError(
                    f"--behind-proxy {network} is far too broad: name your proxies' addresses "
                    "or their subnet (IPv4 /8 or narrower, IPv6 /32 or narrower)"
                )
        return networks


def public_origin(url: str) -> str:
    """``url`` as an origin (``scheme://host[:port]``, lower case), or ConfigError."""
    fix = "write it as https://NAME or https://NAME:PORT (no path, query or user)"
    try:
        origin = parse_origin(url)
    except NotAnOrigin as exc:
        shown = "(not repeated: it holds a password)" if exc.secret else repr(url[:100])
        raise ConfigError(f"server.public_url {shown} {exc.problem}: {fix}") from None
    port = "" if origin.port is None else f":{origin.port}"
    return f"{origin.scheme}://{origin.host}{port}"


class TlsSettings(_Section):
    """HTTPS: generated certificates or your own (S10)."""

    enabled: bool | None = Field(
        None,
        description=(
            "Serve HTTPS. Default: on when binding off loopback or when a certificate is given."
        ),
    )
    cert: Path | None = Field(
        None, description="PEM certificate (with its chain) to serve instead of a generated one."
    )
    key: Path | None = Field(None, description="PEM private key matching `tls.cert`.")
    san: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra DNS names or IP addresses for the generated certificate.",
    )
    profile: Literal["intermediate", "modern"] = Field(
        "intermediate",
        description=(
            "Mozilla TLS profile: `intermediate` (TLS 1.2 and 1.3) or `modern` (TLS 1.3 only)."
        ),
    )

    _split = field_validator("san", mode="before")(_split_commas)


# OWASP Password Storage Cheat Sheet: equivalent argon2id minimums (memory KiB, iterations).
ARGON2_OWASP_MINIMUMS = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))


class AuthSettings(_Section):
    """Sign-in, sessions, API keys and password hashing (S5, S6, S8)."""

    session_idle_minutes: int = Field(
        720, ge=5, le=60 * 24 * 30, description="A session unused this long ends (minutes)."
    )
    session_max_days: int = Field(
        7, ge=1, le=90, description="A session ends this long after sign-in, used or not (days)."
    )
    api_key_days: int = Field(
        90, ge=1, le=3650, description="Default lifetime of a new API key (days)."
    )
    invite_hours: int = Field(
        24, ge=1, le=24 * 14, description="How long an invitation link stays valid (hours)."
    )
    login_max_failures: int = Field(
        5,
        ge=3,
        le=20,
        description=(
            "Failed sign-ins per user name or client address before answers become 429 "
            "with Retry-After."
        ),
    )
    login_backoff_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        description="First lock-out after too many failures; it doubles with each further one.",
    )
    login_backoff_max_seconds: int = Field(
        3600, ge=60, le=86400, description="Longest lock-out after failed sign-ins (seconds)."
    )
    argon2_memory_kib: int = Field(
        65536,
        ge=7168,
        description="argon2id memory cost (KiB). Refused below OWASP's minimum for the time cost.",
    )
    argon2_time_cost: int = Field(3, ge=1, le=20, description="argon2id iterations.")
    argon2_parallelism: int = Field(4, ge=1, le=16, description="argon2id lanes.")

    @model_validator(mode="after")
    def _owasp(self) -> AuthSettings:
        if not any(
            self.argon2_memory_kib >= memory and self.argon2_time_cost >= iterations
            for memory, iterations in ARGON2_OWASP_MINIMUMS
        ):
            raise ConfigError(
                f"argon2 parameters m={self.argon2_memory_kib} KiB t={self.argon2_time_cost} "
                "are below OWASP's minimum: use at least m=19456 with t=2 (or m=12288 with t=3)"
            )
        return self


class DatabaseSettings(_Section):
    """Where runs, users and metrics are stored."""

    url: str | None = Field(
        None,
        repr=False,  # it may hold a password
        description=(
            "SQLAlchemy URL. Default: SQLite file `safeboard.db` in the data directory. "
            "For PostgreSQL: `postgresql+psycopg://user@host/db` (a password in it is never "
            "printed; prefer a .pgpass file or PGPASSWORD)."
        ),
    )

    sqlite_busy_timeout_ms: int = Field(
        5000,
        ge=0,
        le=600_000,
        description=(
            "Milliseconds a SQLite write waits for the write lock held by another writer "
            "(a second process, a long export); past it the request gets 503 "
            "`database_busy` with Retry-After and changes nothing. Ignored on PostgreSQL."
        ),
    )

    @field_serializer("url")
    def _hide_password(self, url: str | None) -> str | None:
        return mask_url_password(url) if url else url


def mask_url_password(url: str) -> str:
    """``scheme://user:***@host/db``: the URL with any password masked."""
    return re.sub(r"^([a-zA-Z][\w+.\-]*://[^/:@]*):[^/@]*@", r"\1:***@", url)


GIB = 1024**3


class ArtifactSettings(_Section):
    """The artifact file server (S12)."""

    path: Path | None = Field(
        None,
        description="Directory for artifact files. Default: `artifacts` in the data directory.",
    )
    max_file_bytes: int = Field(
        20 * GIB,
        ge=1,
        le=2**50,
        description="Largest artifact; a larger one gets 413 before any of its bytes is sent.",
    )
    project_quota_bytes: int = Field(
        200 * GIB,
        ge=0,
        description=(
            "Bytes of artifacts (finished and in progress) one project may hold; 413 beyond "
            "it. 0: no quota."
        ),
    )
    user_quota_bytes: int = Field(
        100 * GIB,
        ge=0,
        description=(
            "Bytes of artifacts (finished and in progress) one user may have uploaded, over "
            "all projects, admins included; 413 beyond it. 0: no quota."
        ),
    )
    preview_seconds: int = Field(
        120,
        ge=10,
        le=300,
        description="Lifetime of a signed preview link for the browser (at most 5 minutes).",
    )
    download_audit_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description=(
            "Downloads and preview fetches of one artifact by one actor from one address "
            "within this many seconds of the audit entry that recorded the first make no new "
            "entry (S16; a player's many Range requests are one download). Coalesced through "
            "the database, so across replicas too. 0: an entry for every request."
        ),
    )
    incomplete_upload_hours: int = Field(
        24,
        ge=1,
        le=24 * 30,
        description=(
            "An unfinished upload that receives no bytes (and is not declared again) for this "
            "many hours expires: its partial file and row are deleted and its quota freed "
            "(at most 30 days)."
        ),
    )


class ProjectSettings(_Section):
    """Projects (S9)."""

    max_per_member: int = Field(
        100,
        ge=0,
        description=(
            "Projects one member may create (counted over the projects they created that "
            "exist); 403 beyond it. Admins are exempt. 0: no bound."
        ),
    )


MIN_SECRET_BYTES = 32
_WEAK_WORDS = ("changeme", "change_me", "secret", "password", "default", "example", "insecure")


def secret_weakness(value: str) -> str | None:
    """Why ``value`` is unfit as a key, or None. Generated keys never trip this."""
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"shorter than {MIN_SECRET_BYTES} bytes"
    lowered = value.lower()
    if any(word in lowered for word in _WEAK_WORDS):
        return "a known-weak value"
    if len(set(value)) < 12:
        return "too repetitive to be random"
    return None


MAX_PREVIOUS_KEYS = 4  # earlier task secrets keys kept by a rotation


def _strong_list(value: SecretStr) -> SecretStr:
    keys = value.get_secret_value().split()
    if len(keys) > MAX_PREVIOUS_KEYS or any(secret_weakness(key) for key in keys):
        raise ConfigError(
            "secret secure.task_secrets_previous_keys (from secrets.toml or "
            "SAFEBOARD__SECURE__TASK_SECRETS_PREVIOUS_KEYS) must hold at most "
            f"{MAX_PREVIOUS_KEYS} space-separated keys, each random and at least "
            f"{MIN_SECRET_BYTES} bytes"
        )
    return value


class SecureSettings(_Section):
    """Secrets. Generated at first start into `secrets.toml` (0600); never printed (S2)."""

    session_secret: SecretStr = Field(
        description="Key for hashing session ids, session bindings and CSRF tokens. "
        "At least 32 bytes."
    )
    signing_key: SecretStr = Field(
        description="Key for signed, short-lived URLs (artifact previews). At least 32 bytes."
    )
    task_secrets_key: SecretStr = Field(
        description="Key that encrypts tasks' secrets at rest (AES-256-GCM, derived by "
        "HKDF-SHA256). At least 32 bytes. `safeboard secrets rotate` moves the old one to "
        "`task_secrets_previous_keys`, so stored secrets stay readable."
    )
    task_secrets_previous_keys: SecretStr = Field(
        SecretStr(""),
        description="Earlier `task_secrets_key`s, space-separated, newest first (at most "
        f"{MAX_PREVIOUS_KEYS}): tasks' secrets sealed under one are still read, and each "
        "start re-encrypts them under the current key. Kept by `safeboard secrets rotate`; "
        "never generated.",
    )

    @field_validator("*")
    @classmethod
    def _strong(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.field_name == "task_secrets_previous_keys":
            return _strong_list(value)
        weakness = secret_weakness(value.get_secret_value())
        if weakness:
            name = info.field_name or "secret"
            raise ConfigError(
                f"secret secure.{name} (from secrets.toml or SAFEBOARD__SECURE__{name.upper()}) "
                f"is {weakness}: run `safeboard secrets rotate`, or set a random value of at "
                f"least {MIN_SECRET_BYTES} bytes"
            )
        return value
