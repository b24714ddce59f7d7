"""The client side shared by the SDK, the CLI and agents: TLS trust (system CAs, a CA file,
or a certificate pinned on first use; S13), stored credentials, the HTTP client, and
``Client``, the API as typed methods returning typed objects (docs/client.md).

Imports only the bottom layer (``safeboard.errors``) and third-party packages: never the
server, the API or storage.
"""

from __future__ import annotations

from safeboard.client.certificate import trust_anchor
from safeboard.client.cleartext import PlainHttpRefused, is_loopback, require_private_transport
from safeboard.client.config import CONFIG_DIR_ENV, config_dir, server_origin
from safeboard.client.credentials import (
    API_KEY_ENV,
    CA_CERT_ENV,
    DATA_DIR_ENV,
    URL_ENV,
    CredentialStore,
    ServerAccess,
    StoredKey,
    read_discovery,
    resolve_server,
)
from safeboard.client.fingerprint import format_fingerprint, parse_fingerprint, same_fingerprint
from safeboard.client.http import ApiClient
from safeboard.client.job_models import (
    AgentInfo,
    Enrollment,
    HelloAnswer,
    JoinToken,
)
from safeboard.client.models import (
    ApiKey,
    Artifact,
    AuditEntry,
    CreatedKey,
    History,
    MetricSummary,
    Points,
    Project,
    Run,
    RunListed,
    RunPage,
    User,
)
from safeboard.client.partfile import UnsafeDownloadPath
from safeboard.client.retry import DEFAULT_POLICY, NO_RETRY, RetryPolicy
from safeboard.client.trust import (
    CertificateChanged,
    CertificateInfo,
    PinnedContext,
    TrustStore,
    UntrustedCertificate,
    ca_context,
    context_for,
    fetch_certificate,
    fetch_chain,
    pinned_context,
    probe,
    system_context,
)
from safeboard.client.typed import Client

__all__ = [
    "API_KEY_ENV",
    "CA_CERT_ENV",
    "CONFIG_DIR_ENV",
    "DATA_DIR_ENV",
    "DEFAULT_POLICY",
    "NO_RETRY",
    "URL_ENV",
    "AgentInfo",
    "ApiClient",
    "ApiKey",
    "Artifact",
    "AuditEntry",
    "CertificateChanged",
    "CertificateInfo",
    "Client",
    "CreatedKey",
    "CredentialStore",
    "Enrollment",
    "HelloAnswer",
    "History",
    "JoinToken",
    "MetricSummary",
    "PinnedContext",
    "PlainHttpRefused",
    "Points",
    "Project",
    "RetryPolicy",
    "Run",
    "RunListed",
    "RunPage",
    "ServerAccess",
    "StoredKey",
    "TrustStore",
    "UnsafeDownloadPath",
    "UntrustedCertificate",
    "User",
    "ca_context",
    "config_dir",
    "context_for",
    "fetch_certificate",
    "fetch_chain",
    "format_fingerprint",
    "is_loopback",
    "parse_fingerprint",
    "pinned_context",
    "probe",
    "read_discovery",
    "require_private_transport",
    "resolve_server",
    "same_fingerprint",
    "server_origin",
    "system_context",
    "trust_anchor",
]
