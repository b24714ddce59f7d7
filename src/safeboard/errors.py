"""One error tree. Each error carries a stable code; one table maps codes to HTTP status.

The API renders every error as ``{"error": {"code", "message", "request_id"}}``; the CLI
prints the message and exits non-zero; the SDK maps codes back to these classes.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CLIENT_ONLY_CODES",
    "STATUS_BY_CODE",
    "AgentCredentialInvalid",
    "AgentRevoked",
    "ApiKeyExpired",
    "ApiKeyRevoked",
    "BadRequest",
    "ChecksumMismatch",
    "ConfigError",
    "Conflict",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "DiskFull",
    "Forbidden",
    "InsufficientRole",
    "InsufficientScope",
    "InvalidApiKey",
    "InvalidRequest",
    "InvalidUrl",
    "JoinTokenInvalid",
    "KeyBoundToProject",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "ProjectMoved",
    "ProjectNotFound",
    "RateLimited",
    "SafeboardError",
    "ServerError",
    "ServerUnreachable",
    "ServiceUnavailable",
    "TooManyStreams",
    "Unauthenticated",
    "WriteQueueFull",
    "WrongScheme",
    "error_for_code",
]


class SafeboardError(Exception):
    """Base of every error safeboard raises on purpose. ``message`` is safe to show."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class ConfigError(SafeboardError):
    """The configuration cannot work. The message names the fix; the CLI prints it as is."""

    code = "config"


class InvalidUrl(ConfigError):
    """A server address that is not ``scheme://host:port`` (a path, garbage). Client only."""

    code = "invalid_url"


class WrongScheme(ConfigError):
    """``https://`` to a plain-HTTP port, or ``http://`` to a TLS port. Client only."""

    code = "wrong_scheme"


class BadRequest(SafeboardError):
    code = "bad_request"


class InvalidRequest(BadRequest):
    """The body or parameters do not match the route's schema."""

    code = "invalid_request"


class Unauthenticated(SafeboardError):
    code = "unauthenticated"


class InvalidApiKey(Unauthenticated):
    """No such key, or a wrong secret, or its owner disabled: one answer for all of them,
    so that nobody without the key learns anything about it (docs/security.md)."""

    code = "key_invalid"


class ApiKeyRevoked(Unauthenticated):
    """The key was revoked. Said only to whoever presents the key's whole secret."""

    code = "key_revoked"


class ApiKeyExpired(Unauthenticated):
    """The key is past its expiry. Said only to whoever presents the key's whole secret."""

    code = "key_expired"


class JoinTokenInvalid(Unauthenticated):
    """An agent's join token that is unknown, has a wrong secret, has expired or was used:
    one answer for all of them, so that a guess learns nothing (docs/agents.md)."""

    code = "join_token_invalid"


class AgentCredentialInvalid(Unauthenticated):
    """No such agent credential, or a wrong secret."""

    code = "agent_invalid"


class AgentRevoked(Unauthenticated):
    """The agent was revoked by an admin. Said only to whoever presents its whole secret."""

    code = "agent_revoked"


class Forbidden(SafeboardError):
    code = "forbidden"


class InsufficientScope(Forbidden):
    """The API key's scope does not cover the action (a read key writing)."""

    code = "scope_insufficient"


class InsufficientRole(Forbidden):
    """The user's role in the project does not allow the action (a viewer writing)."""

    code = "role_insufficient"


class KeyBoundToProject(Forbidden):
    """The API key is bound to one project and the action is outside it (creating a
    project, or anything not of that project)."""

    code = "key_project_bound"


class NotFound(SafeboardError):
    code = "not_found"


class ProjectNotFound(NotFound):
    """The SDK could neither find nor create the project (client only: the server answers
    404 not_found, which hides whether a project one has no grant in exists)."""

    code = "project_not_found"


class ProjectMoved(NotFound):
    """The name is a renamed project's old name, and the caller may read that project: the
    server answers 308 to the same route under ``new_name`` (a Location header and this
    error's body); a client raises it for that answer, with ``location``. Code that catches
    NotFound takes it for what it also is: no project has that name now."""

    code = "project_moved"

    def __init__(
        self,
        message: str,
        *,
        old_name: str = "",
        new_name: str = "",
        location: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, headers=headers)
        self.old_name = old_name
        self.new_name = new_name
        self.location = location


class Gone(NotFound):
    """It existed and was removed for good by the server itself (an expired upload)."""

    code = "gone"


class MethodNotAllowed(SafeboardError):
    code = "method_not_allowed"


class Conflict(SafeboardError):
    code = "conflict"


class PayloadTooLarge(SafeboardError):
    code = "payload_too_large"


class UnsupportedMediaType(SafeboardError):
    code = "unsupported_media_type"


class RateLimited(SafeboardError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = max(1, retry_after)


class TooManyStreams(RateLimited):
    """An account already holds as many open event streams as one server allows."""

    code = "too_many_streams"


class InsufficientStorage(SafeboardError):
    code = "insufficient_storage"


class ServiceUnavailable(SafeboardError):
    """Down, restarting or unreachable for now: worth another try (client.retry).

    The server answers 503 with its message and, given ``retry_after``, a ``Retry-After``
    header; a client that reads one back keeps it in ``retry_after`` (None without)."""

    code = "unavailable"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        headers = dict(headers or {})
        if retry_after is not None:
            retry_after = max(1, retry_after)
            headers["Retry-After"] = str(retry_after)
        super().__init__(message, headers=headers)
        self.retry_after = retry_after


class DatabaseUnavailable(ServiceUnavailable):
    """The database does not answer (PostgreSQL stopped, unreachable, restarting)."""

    code = "database_unavailable"


class DatabaseBusy(ServiceUnavailable):
    """The database could not be had in time (SQLite's write lock held past the busy
    wait, a pool or lock timeout): the request changed nothing."""

    code = "database_busy"


class DiskFull(ServiceUnavailable):
    """The server's disk (database, artifact store) is full; an operator must free space."""

    code = "disk_full"


class ServerUnreachable(ServiceUnavailable):
    """Nothing answers at the address (connection refused, no route, timed out). Client
    only. The SDK retries it (a server restarting); the CLI says so at once."""

    code = "unreachable"


class WriteQueueFull(ServiceUnavailable):
    """The server could not get a write into the database in time (too many at once):
    nothing was stored; send it again after ``Retry-After`` seconds (the SDK does)."""

    code = "busy"

    def __init__(
        self,
        message: str = "the server is busy with other writes: send this again shortly",
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, retry_after=1, headers=headers)


class ServerError(ServiceUnavailable):
    """A 5xx answer without safeboard's error body (a proxy's page, a crash before the
    handler): retried like ``ServiceUnavailable``. Client only."""

    code = "server_error"


class ChecksumMismatch(InvalidRequest):
    """The bytes of an upload hash to another SHA-256 than was declared; the server
    discarded them. Clients match this class, never the message."""

    code = "checksum_mismatch"


STATUS_BY_CODE: dict[str, int] = {
    "internal": 500,
    "config": 500,
    "bad_request": 400,
    "invalid_request": 422,
    "unauthenticated": 401,
    "key_invalid": 401,
    "key_revoked": 401,
    "key_expired": 401,
    "join_token_invalid": 401,
    "agent_invalid": 401,
    "agent_revoked": 401,
    "forbidden": 403,
    "scope_insufficient": 403,
    "role_insufficient": 403,
    "key_project_bound": 403,
    "not_found": 404,
    "gone": 410,
    "project_moved": 308,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "too_many_streams": 429,
    "insufficient_storage": 507,
    "unavailable": 503,
    "database_unavailable": 503,
    "database_busy": 503,
    "disk_full": 503,
    "busy": 503,
    "checksum_mismatch": 422,
    # Raised by clients only (CLIENT_ONLY_CODES below), never sent by the server.
    "tls_changed": 502,
    "tls_untrusted": 502,
    "plain_http": 502,
    "wrong_scheme": 502,
    "invalid_url": 400,
    "project_not_found": 404,
    "unreachable": 503,
    "server_error": 500,
    "transfer_stopped": 503,
}

# Codes no server sends: a client never maps a response's status back to one of them.
CLIENT_ONLY_CODES: frozenset[str] = frozenset(
    {
        "tls_changed",
        "tls_untrusted",
        "plain_http",
        "wrong_scheme",
        "invalid_url",
        "project_not_found",
        "unreachable",
        "server_error",
        "transfer_stopped",
    }
)

_BY_CODE: dict[str, type[SafeboardError]] = {}


def _register(cls: type[SafeboardError]) -> None:
    _BY_CODE[cls.code] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(SafeboardError)


def error_for_code(code: str, message: str) -> SafeboardError:
    """The exception a client raises for an error body received from the server."""
    return _BY_CODE.get(code, SafeboardError)(message)
