"""A small HTTP client for safeboard's API, in the manner of httpx (habit 10).

Error bodies (``{"error": {"code", "message", "request_id"}}``) come back as the same
exception classes the server raised; transport failures become ``ServiceUnavailable``,
certificate failures ``CertificateChanged`` or ``UntrustedCertificate``. The API key travels
only in ``Authorization: Bearer`` and is never part of a URL, a repr or a log line.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from safeboard.client.cleartext import require_private_transport
from safeboard.client.config import server_origin
from safeboard.client.local_socket import LocalServerDown, LocalSocketTransport
from safeboard.client.scheme import wrong_scheme
from safeboard.client.trust import PinnedContext, UntrustedCertificate, diagnose
from safeboard.errors import (
    CLIENT_ONLY_CODES,
    STATUS_BY_CODE,
    ProjectMoved,
    RateLimited,
    SafeboardError,
    ServerError,
    ServerUnreachable,
    ServiceUnavailable,
    error_for_code,
)

__all__ = ["ApiClient"]

log = logging.getLogger("safeboard.client")
# A status without a body maps to the first server code with it (never a client-only code:
# a proxy's 502 is no changed certificate).
_CODE_BY_STATUS = {
    status: code
    for code, status in reversed(STATUS_BY_CODE.items())
    if code not in CLIENT_ONLY_CODES
}
_GATEWAY = frozenset({502, 503, 504})  # what a proxy answers while the server is away
_USER_AGENT = "safeboard-client"


def _quiet_http_loggers() -> None:
    """httpx logs every request's full URL at INFO; keep that out of training logs."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _error_from(response: httpx.Response, origin: str = "") -> SafeboardError:
    """The exception for an error response, from its JSON body when it has one. A 5xx
    without one (a proxy's page) is retryable: 502/503/504 as ``ServiceUnavailable``."""
    status = response.status_code
    where = f"the server at {origin}" if origin else "the server"
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        if error.get("request_id") not in (None, "-") and status >= 500:
            message += f" (request id {error['request_id']})"
    except (ValueError, KeyError, TypeError):
        if status in _GATEWAY:
            return _waiting(response, ServiceUnavailable(
                f"{where} answered {status} (a proxy in front of it?): "
                "it is restarting or down; try again"
            ))  # fmt: skip
        if status >= 500:
            return ServerError(
                f"{where} answered {status} without saying why: try again; "
                "if it persists, its operator can look in the server's log"
            )
        code, message = _CODE_BY_STATUS.get(status, "internal"), f"{where} answered {status}"
    if code not in STATUS_BY_CODE and status in _WAIT_STATUSES:
        # A code this client does not know yet (a newer server's): its status says what
        # kind of failure it is, and that it is worth another try.
        code, message = _CODE_BY_STATUS[status], f"{message} ({code})"
    if code == RateLimited.code:
        return RateLimited(message, retry_after=retry_after(response) or 1)
    if code == ProjectMoved.code:  # a renamed project's old name: where it lives now
        location = response.headers.get("location", "")
        return ProjectMoved(message, new_name=_project_in(location), location=location)
    return _waiting(response, error_for_code(code, message))


def _project_in(location: str) -> str:
    """The project's name in a redirect's ``/api/v1/projects/<name>/...`` ('' if none)."""
    parts = urlsplit(location).path.split("/")
    if len(parts) > 4 and parts[1:4] == ["api", "v1", "projects"]:
        return unquote(parts[4])
    return ""


def _waiting(response: httpx.Response, error: SafeboardError) -> SafeboardError:
    """``error`` with the response's Retry-After, when it is worth another try (client.retry
    waits at least that long)."""
    wait = retry_after(response)
    if wait is not None and isinstance(error, ServiceUnavailable):
        error.retry_after = max(1, wait)
        error.headers = {**error.headers, "Retry-After": str(error.retry_after)}
    return error


_WAIT_STATUSES = frozenset({429, 503})  # "not now": the answers that may say when to come back
_MAX_RETRY_AFTER = 3600  # seconds; the policy caps it again (client.retry)


def retry_after(response: httpx.Response) -> int | None:
    """The ``Retry-After`` of a response in whole seconds (the delay form; a date or a
    value that is not a number is ignored), within 0..``_MAX_RETRY_AFTER``."""
    value = response.headers.get("retry-after", "").strip()
    if not value.isdigit():
        return None
    return min(int(value), _MAX_RETRY_AFTER)


def _reason(exc: BaseException) -> str:
    """A transport failure in words ("connection refused"), without the errno."""
    text = str(exc) or type(exc).__name__
    for known in ("Connection refused", "Name or service not known", "No route to host"):
        if known.lower() in text.lower():
            return known.lower()
    if "nodename nor servname" in text or "Temporary failure in name resolution" in text:
        return "name not known"
    return text.split("] ", 1)[-1]


def _verification_failed(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class ApiClient:
    """``ApiClient(url, api_key, verify=context)``; ``.get(path)``, ``.post(path, json=...)``.

    ``verify`` is the ``ssl.SSLContext`` from ``safeboard.client.trust`` (or ``True`` for the
    system's CAs); ``transport`` replaces the network, e.g. with the in-process app in tests.
    A plain ``http://`` address off loopback is refused (``PlainHttpRefused``): everything
    this client sends carries a credential (S13).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        _quiet_http_loggers()
        self.url = server_origin(url)
        if not isinstance(transport, LocalSocketTransport):  # a socket crosses no network
            require_private_transport(self.url)
        if verify is False and self.url.startswith("https:"):
            log.warning("TLS verification OFF for %s: anyone on the path can pose as it", self.url)
        self._verify = verify
        # Given (ServerAccess.client(renewing=True)): a 401 asks it for the key the local
        # server wrote since (a restart that minted a new one), and the request is sent
        # once more with it. A 401 means the request was not acted on: safe to resend.
        self.renew_key: Callable[[], str | None] | None = None
        # The server answered 415 to a compact metric body: it is from before them, and
        # gets plain ones from now on (client/columns.py).
        self.plain_columns = False
        headers = {"User-Agent": _USER_AGENT, "Origin": self.url}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.url,
            verify=verify,
            transport=transport,
            timeout=timeout,
            headers=headers,
            follow_redirects=False,
            trust_env=False,  # no proxy or netrc from the environment sees the key
        )

    def __repr__(self) -> str:
        return f"ApiClient({self.url!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send one request; raise the safeboard error for any status >= 400. ``content``
        sends bytes already encoded (the SDK's packed metric batches, safeboard.wire), or
        an iterable of byte chunks streamed as they come (artifact uploads: give the
        Content-Length header too). ``timeout`` replaces the client's for this request."""
        if not path.startswith("/"):
            raise ValueError("give an absolute path such as /api/v1/projects")
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = self._http.request(
                method, path, json=json, params=params, headers=headers, content=content, **extra
            )
            if (
                response.status_code == 401
                and isinstance(content, bytes | None)
                and self._renewed()
            ):
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers, content=content,
                    **extra,
                )  # fmt: skip
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 300:  # a redirect is not followed: the caller decides
            raise _error_from(response, self.url)
        return response

    def _renewed(self) -> bool:
        """Whether ``renew_key`` gave a new key, now sent with every request."""
        key = self.renew_key() if self.renew_key is not None else None
        if not key:
            return False
        self._http.headers["Authorization"] = f"Bearer {key}"
        return True

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives (``iter_bytes()``), for artifact
        downloads. Errors map as in :meth:`request`, also those raised while reading."""
        if not path.startswith("/"):
            raise ValueError("give an absolute path such as /api/v1/projects")
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            with self._http.stream(method, path, headers=headers, **extra) as response:
                if response.status_code >= 300:
                    response.read()
                    raise _error_from(response, self.url)
                yield response
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None

    def _transport_error(self, exc: httpx.TransportError) -> SafeboardError:
        failed = _verification_failed(exc)
        mistaken = wrong_scheme(self.url, exc) if failed is None else None
        if mistaken is not None:
            return mistaken
        if failed is None:
            return self._unreachable(exc)
        if isinstance(self._verify, PinnedContext):  # changed, or fails for another reason
            return diagnose(self.url, self._verify, failed)
        return UntrustedCertificate(
            f"the TLS certificate of {self.url} is not trusted ({failed.verify_message}); "
            f"nothing was sent. To check and pin it: safeboard login {self.url}"
        )

    def _unreachable(self, exc: httpx.TransportError) -> ServiceUnavailable:
        """Nothing answers (refused, timed out): say what to check, not an errno."""
        if isinstance(exc, httpx.TimeoutException):
            limits = self._http.timeout
            seconds = limits.connect if isinstance(exc, httpx.ConnectTimeout) else limits.read
            within = f" within {seconds:g} s" if seconds is not None else ""
            return ServerUnreachable(
                f"the safeboard server at {self.url} did not answer{within}: it may be "
                "busy, or a firewall drops the connection; try again or check the address"
            )
        if isinstance(exc, LocalServerDown):  # names the socket and the fix already
            return ServerUnreachable(f"no safeboard server answers at {self.url}: {exc}")
        if isinstance(exc, httpx.ConnectError):
            reason = _reason(exc)
            return ServerUnreachable(
                f"no safeboard server answers at {self.url} ({reason}): is it running? "
                "start it with `safeboard server`, or check the address"
            )
        return ServiceUnavailable(f"the connection to {self.url} broke: {_reason(exc)}; try again")

    def answers(self, path: str = "/healthz") -> int:
        """GET ``path`` and return the status of whatever answers: only a transport
        failure raises (nothing answers, the wrong scheme, an untrusted certificate)."""
        try:
            return self._http.request("GET", path).status_code
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
