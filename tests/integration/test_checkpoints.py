"""SQLite's WAL checkpoints run in a thread after the writes, not inside the commits that
cross 1,000 pages of log (storage/checkpoints.py): on a real database file, the log is
copied into the database file by the thread only, when writes pause, at least every
``longest`` seconds while they go on, and once more when it stops."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from safeboard.storage import create_engine
from safeboard.storage.checkpoints import FALLBACK_PAGES, Checkpointer, checkpoint_in_background

BLOB = 1 << 20  # 256 pages of 4 KiB a commit


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE chunks (id INTEGER PRIMARY KEY, data BLOB)")
    checkpoint_in_background(engine)  # after a connection was made: it is replaced
    yield engine
    engine.dispose()


def database_bytes(engine: sa.Engine) -> int:
    assert engine.url.database is not None
    return Path(engine.url.database).stat().st_size


def write(engine: sa.Engine, commits: int) -> None:
    for _ in range(commits):
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO chunks (data) VALUES (:d)"), {"d": os.urandom(BLOB)})


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def test_commits_leave_the_log_to_the_thread(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == FALLBACK_PAGES
    write(engine, 8)  # 2,048 pages: twice SQLite's default point of a checkpoint in a commit
    assert database_bytes(engine) < BLOB, "a commit copied the log into the database"
    checkpoints = Checkpointer(engine, quiet=0.05)
    checkpoints.start()
    try:
        write(engine, 1)
        wait_for(lambda: checkpoints.checkpoints >= 1)
        assert database_bytes(engine) >= 9 * BLOB  # every commit's pages, by the thread
    finally:
        checkpoints.stop()


def test_writes_going_on_are_checkpointed_every_longest(engine: sa.Engine) -> None:
    checkpoints = Checkpointer(engine, quiet=30.0, longest=0.2)
    checkpoints.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 1.2:  # never quiet for 30 s
            write(engine, 1)
            time.sleep(0.05)
        assert checkpoints.checkpoints >= 3
        assert database_bytes(engine) >= 3 * BLOB
    finally:
        checkpoints.stop()


def test_stop_checkpoints_what_is_pending(engine: sa.Engine) -> None:
    checkpoints = Checkpointer(engine, quiet=30.0, longest=30.0)
    checkpoints.start()
    write(engine, 2)
    assert checkpoints.checkpoints == 0
    checkpoints.stop()
    assert checkpoints.checkpoints == 1
    assert database_bytes(engine) >= 2 * BLOB
    write(engine, 1)  # stopped: no thread, no listener left
    assert checkpoints.checkpoints == 1


def test_nothing_written_nothing_done(engine: sa.Engine) -> None:
    checkpoints = Checkpointer(engine, quiet=0.01)
    checkpoints.start()
    with engine.connect() as conn:  # a read commits nothing
        conn.exec_driver_sql("SELECT count(*) FROM chunks").scalar()
    time.sleep(0.2)
    checkpoints.stop()
    assert checkpoints.checkpoints == 0
