"""Infrastructure faults (issue 13): which driver errors are which cause, by the driver's
code; the once-per-interval log line; the client reads the cause and its wait back."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from safeboard import errors
from safeboard.api.faults import FaultLog
from safeboard.client.http import _error_from
from safeboard.storage.faults import classify

CAUSES = [
    ("database_unavailable", errors.DatabaseUnavailable),
    ("database_busy", errors.DatabaseBusy),
    ("disk_full", errors.DiskFull),
]


@pytest.mark.parametrize(("code", "cls"), CAUSES)
def test_each_cause_is_a_retryable_503(code: str, cls: type[errors.ServiceUnavailable]) -> None:
    assert cls.code == code
    assert issubclass(cls, errors.ServiceUnavailable)
    assert errors.STATUS_BY_CODE[code] == 503
    assert code not in errors.CLIENT_ONLY_CODES


@pytest.mark.parametrize(("code", "cls"), CAUSES)
def test_the_client_maps_the_cause_and_its_retry_after_back(
    code: str, cls: type[errors.ServiceUnavailable]
) -> None:
    body = {"error": {"code": code, "message": "retry after 7 s", "request_id": "r"}}
    error = _error_from(httpx.Response(503, json=body, headers={"Retry-After": "7"}))
    assert type(error) is cls
    assert error.retry_after == 7
    assert error.message.startswith("retry after 7 s")
    without = _error_from(httpx.Response(503, json=body))
    assert type(without) is cls
    assert without.retry_after is None


def test_a_proxy_s_503_keeps_its_retry_after() -> None:
    page = httpx.Response(503, text="<html>maintenance</html>", headers={"Retry-After": "120"})
    error = _error_from(page)
    assert type(error) is errors.ServiceUnavailable
    assert error.retry_after == 120
    assert _error_from(httpx.Response(502, text="bad gateway")).retry_after is None


def _locked_error(tmp_path: Path) -> sqlite3.Error:
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as raised:
            other.execute("BEGIN IMMEDIATE")
        return raised.value
    finally:
        other.close()
        holder.close()


def _full_error(tmp_path: Path) -> sqlite3.Error:
    conn = sqlite3.connect(tmp_path / "y.db")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count = 3")
    try:
        with pytest.raises(sqlite3.OperationalError) as raised:
            conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
        return raised.value
    finally:
        conn.close()


def test_sqlite_errors_are_classified_by_their_result_code(tmp_path: Path) -> None:
    locked = classify(sa_exc.OperationalError("INSERT ...", {}, _locked_error(tmp_path)))
    assert locked is not None
    assert isinstance(locked.error, errors.DatabaseBusy)
    assert locked.error.headers == {"Retry-After": "1"}
    assert "database is locked" in locked.reason
    full = classify(sa_exc.OperationalError("INSERT ...", {}, _full_error(tmp_path)))
    assert full is not None
    assert isinstance(full.error, errors.DiskFull)
    # Not a fault: a bug, left to the generic 500.
    syntax = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as raised:
        syntax.execute("SELEKT 1")
    assert classify(sa_exc.OperationalError("SELEKT 1", {}, raised.value)) is None
    assert classify(sa_exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("unique"))) is None


def test_postgresql_errors_are_classified_by_their_sqlstate() -> None:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("host=127.0.0.1 port=9 dbname=none user=nobody connect_timeout=2")
    down = classify(sa_exc.OperationalError("connect", {}, refused.value))
    assert down is not None
    assert isinstance(down.error, errors.DatabaseUnavailable)
    assert down.error.headers == {"Retry-After": "5"}
    assert "refused" in down.reason.lower()
    cases = {
        "57P01": errors.DatabaseUnavailable,  # admin shutdown: the server is stopping
        "08006": errors.DatabaseUnavailable,
        "53100": errors.DiskFull,
        "55P03": errors.DatabaseBusy,
        "40P01": errors.DatabaseBusy,
        "53300": errors.DatabaseBusy,
    }
    for state, cls in cases.items():
        found = classify(psycopg.errors.lookup(state)("server says so"))
        assert found is not None, state
        assert type(found.error) is cls, state
    assert classify(psycopg.errors.lookup("42P01")("no such table")) is None
    assert classify(sa_exc.TimeoutError("QueuePool limit reached")) is not None


def test_a_full_disk_on_a_file_write_is_disk_full() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError, match="No space left") as raised:
            os.write(fd, b"x")
    finally:
        os.close(fd)
    assert raised.value.errno == errno.ENOSPC
    fault = classify(raised.value)
    assert fault is not None
    assert isinstance(fault.error, errors.DiskFull)
    assert fault.error.headers == {"Retry-After": "30"}
    assert classify(PermissionError(errno.EACCES, "denied")) is None
    assert classify(ConnectionResetError(errno.ECONNRESET, "reset")) is None


def test_the_log_says_each_cause_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    due: list[tuple[float, Callable[[], None]]] = []
    faults = FaultLog(10, clock=lambda: now[0], later=lambda delay, fn: due.append((delay, fn)))

    def at(moment: float) -> None:
        now[0] = moment

    with caplog.at_level(logging.WARNING, logger="safeboard.faults"):
        faults.record("database_unavailable", "connection refused")  # at once
        for i in range(1, 41):
            at(100 + i * 0.2)
            faults.record("database_unavailable", "connection refused")
            faults.record("database_busy", "database is locked")
        assert [delay for delay, _ in due] == [pytest.approx(9.8)] * 2  # one per cause
        assert len(caplog.records) == 2
        unavailable_due = due.pop(0)[1]
        at(110)
        unavailable_due()  # the interval's summary
        at(111)
        faults.record("database_unavailable", "connection refused")
        at(121)
        due.pop(1)[1]()  # the last one, after the episode ended
        due.clear()
        at(500)  # long after: a new episode, said at once
        faults.record("database_unavailable", "server closed the connection")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        (
            "database unavailable: answering 503 (a line every 10 s while it lasts): "
            "connection refused"
        ),
        "database busy: answering 503 (a line every 10 s while it lasts): database is locked",
        "database unavailable (40 requests answered 503 in the last 10 s): connection refused",
        "database unavailable (1 request answered 503 in the last 11 s): connection refused",
        (
            "database unavailable: answering 503 (a line every 10 s while it lasts): "
            "server closed the connection"
        ),
    ]
    assert not [record for record in caplog.records if record.exc_info]
