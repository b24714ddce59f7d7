"""What the client makes of answers that are not safeboard's (review of issue 11): a
proxy's HTML 502/503/504 is the server restarting (retried), never a changed certificate;
a refused connection says what to check, without an errno, and the CLI says it at once."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from safeboard import errors
from safeboard.client.artifacts import TransferStopped
from safeboard.client.http import _CODE_BY_STATUS, ApiClient, _error_from
from safeboard.client.retry import DEFAULT_POLICY, INTERACTIVE_POLICY
from safeboard.client.typed import Client

URL = "http://127.0.0.1:18299"


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_proxy_s_gateway_page_is_the_server_restarting(status: int) -> None:
    error = _error_from(httpx.Response(status, text="<html>bad gateway</html>"), URL)
    assert type(error) is errors.ServiceUnavailable
    assert error.message == (
        f"the server at {URL} answered {status} (a proxy in front of it?): "
        "it is restarting or down; try again"
    )
    assert DEFAULT_POLICY.should_retry(error)
    assert INTERACTIVE_POLICY.should_retry(error)


@pytest.mark.parametrize("status", [500, 501, 520])
def test_another_5xx_without_a_body_is_retryable(status: int) -> None:
    error = _error_from(httpx.Response(status, text="oops"))
    assert isinstance(error, errors.ServiceUnavailable)
    assert error.code == "server_error"
    assert f"answered {status}" in error.message
    assert DEFAULT_POLICY.should_retry(error)


def test_no_status_maps_back_to_a_client_only_code() -> None:
    assert not set(_CODE_BY_STATUS.values()) & errors.CLIENT_ONLY_CODES
    for status in (400, 404, 500, 502, 503, 504):
        error = _error_from(httpx.Response(status, text=""))
        assert not error.code.startswith(("tls_", "plain_", "wrong_")), status
    body = {"error": {"code": "unavailable", "message": "draining", "request_id": "r1"}}
    assert _error_from(httpx.Response(503, json=body)).message == "draining (request id r1)"


def test_a_transfer_stop_has_its_own_code() -> None:
    assert TransferStopped.code == "transfer_stopped"
    assert TransferStopped.code != errors.ServiceUnavailable.code
    assert type(errors.error_for_code("unavailable", "x")) is errors.ServiceUnavailable


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def _hang(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectTimeout("timed out", request=request)


def test_a_refused_connection_names_the_fix_not_an_errno() -> None:
    with (
        ApiClient(URL, transport=httpx.MockTransport(_refuse)) as client,
        pytest.raises(errors.ServiceUnavailable) as caught,
    ):
        client.get("/healthz")
    assert caught.value.message == (
        f"no safeboard server answers at {URL} (connection refused): is it running? "
        "start it with `safeboard server`, or check the address"
    )
    assert "Errno" not in caught.value.message
    with (
        ApiClient(URL, transport=httpx.MockTransport(_hang), timeout=7.5) as client,
        pytest.raises(errors.ServerUnreachable, match=r"did not answer within 7\.5 s"),
    ):
        client.get("/healthz")


def test_the_interactive_policy_does_not_wait_on_a_refused_connection() -> None:
    tries: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        return _refuse(request)

    api = ApiClient(URL, "sb_x_y", transport=httpx.MockTransport(refuse))
    started = time.monotonic()
    with Client(api, retry=INTERACTIVE_POLICY) as client, pytest.raises(errors.ServerUnreachable):
        client.projects()
    assert len(tries) == 1
    assert time.monotonic() - started < 1.0
    assert DEFAULT_POLICY.should_retry(errors.ServerUnreachable("x"))  # the SDK waits it out


def test_a_stopped_local_server_is_named_once_with_the_fix(tmp_path: Path) -> None:
    """Through the local socket: one cause and one fix (the message said both twice)."""
    from safeboard.client.local_socket import LocalSocketTransport
    from safeboard.errors import ServerUnreachable

    socket = tmp_path / "server.sock"
    transport = LocalSocketTransport(socket)
    with (
        ApiClient("http://127.0.0.1:8080", transport=transport) as api,
        pytest.raises(ServerUnreachable) as refused,
    ):
        api.get("/healthz")
    message = refused.value.message
    assert f"the local server is not running (nothing listens on its socket, {socket})" in message
    assert message.count("start it with") == 1, message


def test_init_takes_the_spool_directory_as_a_string(tmp_path: Path) -> None:
    import safeboard

    run = safeboard.init("p", mode="offline", spool_dir=str(tmp_path / "spool"), quiet=True)
    run.log({"a": 1.0})
    run.finish(timeout=5)
    assert (tmp_path / "spool" / run.id / "run.json").is_file()


@pytest.mark.parametrize("code", ["unavailable", "database_busy", "disk_full", "busy"])
def test_a_503_keeps_its_retry_after_whatever_its_code(code: str) -> None:
    """Any 503 is worth another try and says when (issue 13): a code this client does not
    know yet (a newer server's) still maps by its status, and keeps its name in the text."""
    body = {"error": {"code": code, "message": "not now", "request_id": "-"}}
    error = _error_from(httpx.Response(503, json=body, headers={"Retry-After": "7"}))
    assert isinstance(error, errors.ServiceUnavailable)
    assert code in f"{error.code} {error.message}"
    assert error.headers["Retry-After"] == "7"
    assert DEFAULT_POLICY.delay(1, error) >= 7.0


def test_a_proxy_s_503_with_retry_after_keeps_it_and_a_date_is_ignored() -> None:
    page = httpx.Response(503, text="<html>busy</html>", headers={"Retry-After": "3"})
    assert _error_from(page).headers["Retry-After"] == "3"
    dated = httpx.Response(503, text="", headers={"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"})
    assert "Retry-After" not in _error_from(dated).headers
