"""The audit log on SQLite and PostgreSQL: chaining, tamper detection as an attacker with
database access would tamper (raw SQL), concurrent appends and listing (S16)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from sqlalchemy import Engine, text

from safeboard.audit import repository, service
from safeboard.audit.events import GENESIS_HASH, AuditAction, AuditEntry, Problem, chain_hash
from tests.support.schema import migrate

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def log(engine: Engine) -> Engine:
    """A migrated database holding five entries, one a minute from T0, ids 1 to 5."""
    migrate(engine)
    for i in range(5):
        service.record(
            engine,
            action=AuditAction.LOGIN_OK,
            actor=f"user:u{i}",
            target=f"user:u{i}",
            address="127.0.0.1",
            detail={"via": "password", "n": i},
            at=T0 + timedelta(minutes=i),
        )
    return engine


def raw(engine: Engine, sql: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def ids(found: list[AuditEntry]) -> list[int]:
    return [entry.id for entry in found]


def all_entries(engine: Engine) -> list[AuditEntry]:
    return service.list_entries(engine)


def test_entries_chain_and_verify(log: Engine) -> None:
    found = all_entries(log)
    assert [e.id for e in found] == [1, 2, 3, 4, 5]
    assert found[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in pairwise(found))
    assert found[2].detail == {"via": "password", "n": 2}
    assert found[2].at == T0 + timedelta(minutes=2)

    report = service.verify(log)
    assert report.ok, report.problems
    assert (report.checked, report.head_id, report.head_hash) == (5, 5, found[-1].hash)


def test_empty_log_verifies(engine: Engine) -> None:
    migrate(engine)
    report = service.verify(engine)
    assert (report.ok, report.checked, report.head_id) == (True, 0, None)


def test_append_commits_or_rolls_back_with_the_callers_transaction(log: Engine) -> None:
    with log.connect() as conn, conn.begin() as transaction:
        repository.append(conn, action=AuditAction.USER_CREATED, actor="cli:root")
        transaction.rollback()
    assert len(all_entries(log)) == 5

    with log.begin() as conn:
        made = repository.append(
            conn,
            action=AuditAction.ROLE_CHANGED,
            actor="user:u0",
            target="user:u1",
            detail={"from": "member", "to": "admin"},
        )
    assert all_entries(log)[-1] == made
    assert service.verify(log).ok


def test_secret_detail_is_refused_and_nothing_is_written(log: Engine) -> None:
    with pytest.raises(ValueError, match="named like a secret"):
        service.record(log, action=AuditAction.KEY_CREATED, actor="u", detail={"token": "x"})
    assert len(all_entries(log)) == 5


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET actor = 'user:mallory' WHERE id = 3",
        "UPDATE audit_log SET detail = replace(detail, '2', '99') WHERE id = 3",
        "UPDATE audit_log SET outcome = 'denied' WHERE id = 3",
        "UPDATE audit_log SET id = 30 WHERE id = 3",  # renumbered: the id is in the hash
    ],
)
def test_edited_row_is_detected(log: Engine, sql: str) -> None:
    raw(log, sql)
    assert Problem(30 if "id = 30" in sql else 3, "edited") in service.verify(log).problems


def test_edited_row_is_detected_even_when_its_hash_is_recomputed(log: Engine) -> None:
    victim = all_entries(log)[2]
    forged = chain_hash(
        prev_hash=victim.prev_hash,
        id=victim.id,
        at=victim.at,
        action=victim.action,
        actor="user:mallory",
        target=victim.target,
        outcome=victim.outcome,
        address=victim.address,
        detail='{"n":2,"via":"password"}',
    )
    raw(log, "UPDATE audit_log SET actor = 'user:mallory', hash = :h WHERE id = 3", h=forged)
    assert service.verify(log).problems == [Problem(4, "deleted/reordered")]


def test_inserted_row_is_detected(log: Engine) -> None:
    # Make room after row 2 (two steps, so no id collides), then forge row 3 linked to row 2
    # with a correctly computed hash of its own.
    raw(log, "UPDATE audit_log SET id = id + 1000 WHERE id > 2")
    raw(log, "UPDATE audit_log SET id = id - 999 WHERE id > 1000")
    before = all_entries(log)[1]
    forged = chain_hash(
        prev_hash=before.hash,
        id=3,
        at=before.at,
        action="user.role_changed",
        actor="user:u0",
        target="user:mallory",
        outcome="ok",
        address="",
        detail="{}",
    )
    raw(
        log,
        "INSERT INTO audit_log (id, at, action, actor, target, outcome, address, detail, "
        "prev_hash, hash) SELECT 3, at, 'user.role_changed', 'user:u0', 'user:mallory', 'ok', "
        "'', '{}', hash, :h FROM audit_log WHERE id = 2",
        h=forged,
    )
    problems = service.verify(log).problems
    assert Problem(3, "inserted") in problems
    # The rows moved to make room are reported too: their ids are in their hashes.
    assert sorted(problems) == [(3, "inserted"), (4, "edited"), (5, "edited"), (6, "edited")]


@pytest.mark.parametrize(("deleted", "reported"), [(3, 4), (1, 2), ((2, 3), 4)])
def test_deleted_rows_are_detected(
    log: Engine, deleted: int | tuple[int, ...], reported: int
) -> None:
    for row_id in deleted if isinstance(deleted, tuple) else (deleted,):
        raw(log, "DELETE FROM audit_log WHERE id = :id", id=row_id)
    assert service.verify(log).problems == [Problem(reported, "deleted/reordered")]


def test_deleting_the_newest_rows_is_the_documented_limit(log: Engine) -> None:
    head = service.verify(log)
    raw(log, "DELETE FROM audit_log WHERE id >= 4")
    after = service.verify(log)
    # Not detectable from the chain alone; an operator who recorded the head sees it moved.
    assert after.ok
    assert (after.head_id, head.head_id) == (3, 5)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_garbled_timestamp_is_an_edit_not_a_crash(log: Engine) -> None:
    raw(log, "UPDATE audit_log SET at = 'not a time' WHERE id = 2")
    raw(log, "UPDATE audit_log SET actor = 42 WHERE id = 4")
    assert service.verify(log).problems == [Problem(2, "edited"), Problem(4, "edited")]


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_append_refuses_a_snapshot_older_than_its_lock(log: Engine) -> None:
    with log.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        with pytest.raises(RuntimeError, match="READ COMMITTED"), conn.begin():
            repository.append(conn, action=AuditAction.LOGOUT, actor="user:u0")
    assert service.verify(log).checked == 5


THREADS = 8
PER_THREAD = 15


def test_concurrent_appends_keep_one_linear_chain(engine: Engine) -> None:
    migrate(engine)
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(PER_THREAD):
                if i % 2:  # its own transaction (BEGIN IMMEDIATE on SQLite)
                    service.record(engine, action=AuditAction.LOGOUT, actor=f"user:t{n}")
                else:  # in a caller's transaction (deferred BEGIN on SQLite)
                    with engine.begin() as conn:
                        repository.append(conn, action=AuditAction.LOGIN_OK, actor=f"user:t{n}")
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    report = service.verify(engine)
    assert report.ok, report.problems
    assert report.checked == THREADS * PER_THREAD
    found = all_entries(engine)
    assert len({e.prev_hash for e in found}) == len(found)  # no two link to the same row


def test_listing_filters(log: Engine) -> None:
    service.record(
        log,
        action=AuditAction.LOGIN_FAILED,
        actor="anonymous",
        outcome="denied",
        at=T0 + timedelta(minutes=10),
    )

    assert ids(service.list_entries(log, since=T0 + timedelta(minutes=2))) == [3, 4, 5, 6]
    assert ids(service.list_entries(log, until=T0 + timedelta(minutes=2))) == [1, 2]
    window = {"since": T0 + timedelta(minutes=1), "until": T0 + timedelta(minutes=3)}
    assert ids(service.list_entries(log, **window)) == [2, 3]
    assert ids(service.list_entries(log, action=AuditAction.LOGIN_FAILED)) == [6]
    assert ids(service.list_entries(log, action="login.ok", limit=2)) == [1, 2]
    assert ids(service.list_entries(log, after_id=2, limit=2)) == [3, 4]
    assert ids(service.list_entries(log, limit=3, newest_first=True)) == [6, 5, 4]
    elsewhere = (T0 + timedelta(minutes=4)).astimezone(timezone(timedelta(hours=2)))
    assert ids(service.list_entries(log, since=elsewhere)) == [5, 6]

    with pytest.raises(ValueError, match="naive"):
        service.list_entries(log, since=datetime(2025, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="limit"):
        service.list_entries(log, limit=0)


def test_last_for_finds_the_newest_entry_about_a_target_through_the_index(log: Engine) -> None:
    for i, target in enumerate(["artifact:a", "artifact:b", "artifact:a"]):
        at = T0 + timedelta(hours=1, minutes=i)
        service.record(log, action=AuditAction.ARTIFACT_EXPIRED, actor="system:expiry",
                       target=target, detail={"n": i}, at=at)  # fmt: skip
    with log.connect() as conn:
        found = repository.last_for(conn, AuditAction.ARTIFACT_EXPIRED, "artifact:a")
        assert found is not None
        assert (found.target, found.detail["n"]) == ("artifact:a", 2)
        assert repository.last_for(conn, AuditAction.ARTIFACT_EXPIRED, "artifact:c") is None
        assert repository.last_for(conn, AuditAction.LOGIN_OK, "artifact:a") is None
        if log.dialect.name == "sqlite":  # (PostgreSQL's plan for five rows is its own call)
            # One lookup, by the (action, target) index: not a walk over every expiry entry.
            plan = conn.execute(
                text("EXPLAIN QUERY PLAN SELECT id FROM audit_log WHERE action = :a AND "
                     "target = :t ORDER BY id DESC LIMIT 1"),
                {"a": "artifact.expired", "t": "artifact:a"},
            ).all()  # fmt: skip
            assert "ix_audit_log_action_target" in " ".join(str(row) for row in plan), plan
