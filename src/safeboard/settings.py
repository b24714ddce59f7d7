"""One typed settings tree, validated once at start and passed down.

Precedence, highest first: keyword arguments (the CLI's flags), environment variables
``SAFEBOARD__<SECTION>__<KEY>``, ``<data_dir>/secrets.toml`` (the ``secure`` section only),
``<data_dir>/safeboard.toml``. Nothing here reads the environment at import time.

Every field carries a description: ``docs/settings.md`` is generated from them
(``safeboard config docs``) and a test fails when the two drift.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from safeboard.errors import ConfigError
from safeboard.hosts import is_loopback_host, is_wildcard_host
from safeboard.settings_jobs import JobSettings
from safeboard.settings_retention import RetentionSettings
from safeboard.settings_sections import (
    MAX_PREVIOUS_KEYS,
    ArtifactSettings,
    AuthSettings,
    DatabaseSettings,
    ProjectSettings,
    SecureSettings,
    ServerSettings,
    TlsSettings,
    mask_url_password,
)
from safeboard.settings_tensorboard import TensorboardSettings
from safeboard.userdirs import DATA_DIR_ENV, default_data_dir

__all__ = [
    "DATA_DIR_ENV",
    "MAX_PREVIOUS_KEYS",
    "SECRETS_FILE",
    "SETTINGS_FILE",
    "ArtifactSettings",
    "AuthSettings",
    "DatabaseSettings",
    "JobSettings",
    "ProjectSettings",
    "SecureSettings",
    "ServerSettings",
    "Settings",
    "TlsSettings",
    "default_data_dir",
    "is_loopback_host",
    "is_wildcard_host",
    "load_settings",
    "mask_url_password",
]

SETTINGS_FILE = "safeboard.toml"
SECRETS_FILE = "secrets.toml"

HTTP_PORT = 8080
HTTPS_PORT = 8443


class Settings(BaseSettings):
    """The whole configuration of one safeboard server."""

    model_config = SettingsConfigDict(
        env_prefix="SAFEBOARD__",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    data_dir: Path = Field(
        description=(
            "Directory for the database, secrets and certificates (created 0700). "
            "Set with `--data-dir` or `SAFEBOARD_DATA_DIR`."
        ),
    )
    server: ServerSettings = Field(default_factory=ServerSettings, description="HTTP server.")
    tls: TlsSettings = Field(default_factory=TlsSettings, description="TLS.")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings, description="Storage.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Authentication.")
    artifacts: ArtifactSettings = Field(
        default_factory=ArtifactSettings, description="Artifact files."
    )
    projects: ProjectSettings = Field(default_factory=ProjectSettings, description="Projects.")
    jobs: JobSettings = Field(default_factory=JobSettings, description="Queued jobs.")
    tensorboard: TensorboardSettings = Field(
        default_factory=TensorboardSettings, description="TensorBoard, secured."
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="Deleted runs: the trash and purges."
    )
    secure: SecureSettings = Field(description="Secrets.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The data directory is known before the settings (the files live in it); the
        # loader passes it as an init argument, and the TOML files are read from there.
        del settings_cls, dotenv_settings, file_secret_settings  # no .env: one place each
        return (init_settings, env_settings)

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        """Fill the derived defaults and refuse unsafe combinations, naming the fix."""
        server, tls = self.server, self.tls
        if (tls.cert is None) != (tls.key is None):
            raise ConfigError(
                "--tls-cert and --tls-key go together: give both, or neither for a "
                "generated certificate"
            )
        loopback = is_loopback_host(server.host)
        # Off loopback TLS is on, also behind a named proxy, unless --no-tls said otherwise.
        enabled = tls.enabled if tls.enabled is not None else (tls.cert is not None or not loopback)
        if not enabled and not loopback and not server.behind_proxy:
            raise ConfigError(
                f"refusing plain HTTP on {server.host}: drop --no-tls to serve HTTPS, or name "
                "the reverse proxy that terminates TLS with --behind-proxy CIDR"
            )
        if not enabled and tls.cert is not None:
            raise ConfigError("--tls-cert was given with --no-tls: drop one of them")
        port = server.port or (HTTPS_PORT if enabled else HTTP_PORT)
        url = self.database.url or f"sqlite:///{self.data_dir / 'safeboard.db'}"
        object.__setattr__(self, "tls", tls.model_copy(update={"enabled": enabled}))
        object.__setattr__(self, "server", server.model_copy(update={"port": port}))
        object.__setattr__(self, "database", self.database.model_copy(update={"url": url}))
        files = self.artifacts.path or self.data_dir / "artifacts"
        object.__setattr__(self, "artifacts", self.artifacts.model_copy(update={"path": files}))
        return self

    # Convenience views of the resolved values, typed without Optional.
    @property
    def tls_on(self) -> bool:
        return bool(self.tls.enabled)

    @property
    def port(self) -> int:
        assert self.server.port is not None  # filled by _resolve  # noqa: S101
        return self.server.port

    @property
    def artifact_dir(self) -> Path:
        assert self.artifacts.path is not None  # filled by _resolve  # noqa: S101
        return self.artifacts.path

    @property
    def database_url(self) -> str:
        assert self.database.url is not None  # filled by _resolve  # noqa: S101
        return self.database.url


def load_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Build the settings of the server whose data lives in ``data_dir``.

    ``overrides`` are the CLI's flags as nested dicts (``{"tls": {"profile": "modern"}}``);
    they beat the environment, which beats ``secrets.toml`` and then ``safeboard.toml``.
    Secrets may live in ``secrets.toml`` or the environment, never in ``safeboard.toml``.
    """
    settings_file = data_dir / SETTINGS_FILE
    secrets_file = data_dir / SECRETS_FILE
    if settings_file.exists():
        on_disk = _read_toml(settings_file)
        if "secure" in on_disk:
            raise ConfigError(
                f"{settings_file} holds a [secure] section: secrets belong in {secrets_file} "
                "(0600) or in SAFEBOARD__SECURE__* variables; move them there"
            )

    class _FromDataDir(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            del dotenv_settings, file_secret_settings
            return (
                init_settings,
                env_settings,
                TomlConfigSettingsSource(settings_cls, toml_file=secrets_file),
                TomlConfigSettingsSource(settings_cls, toml_file=settings_file),
            )

    try:
        return _FromDataDir(data_dir=data_dir, **overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:
        # e.g. SAFEBOARD__SERVER='{not json'; pydantic-settings names the field.
        field = re.search(r'field "([\w.]+)"', str(exc))
        env = f"SAFEBOARD__{field.group(1).upper().replace('.', '__')}" if field else "SAFEBOARD__*"
        raise ConfigError(f"cannot parse {env}: give it valid JSON, or unset it") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid UTF-8 TOML ({exc}); fix or remove it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; fix its permissions") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the setting, the environment variable that sets it, and the problem."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    env = "SAFEBOARD__" + "__".join(str(p).upper() for p in first["loc"] if isinstance(p, str))
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {where} ({env}): {first['msg']}{more}"
