"""Deleting one row and everything that references it, in bounded transactions.

A run holds millions of metric rows; one ``DELETE`` of them all would hold SQLite's single
writer for seconds and stall every ingest meanwhile. :func:`purge_row` instead deletes the
referencing rows of each table ``batch`` at a time, each batch its own short transaction
(``BEGIN IMMEDIATE`` on SQLite: it waits for the writer like any other write), then the row
itself. The tables are found in ``Base.metadata`` by their foreign keys, so a table a
domain adds later is purged with no change here. Rows of deeper tables (a task's attempts)
go with their parents through ``ON DELETE CASCADE``.

It is safe to run twice at once (two replicas' sweeps): each batch deletes what is still
there, and a deleted row is not deleted twice.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy import Engine

from safeboard.storage.engine import writer
from safeboard.storage.models import Base

__all__ = ["PurgeStopped", "purge_row", "referencing"]


class PurgeStopped(Exception):
    """The purge was told to stop between two batches; what it deleted stays deleted."""


def referencing(table_name: str) -> list[tuple[sa.Table, sa.Column[object]]]:
    """Each table with a foreign key to ``table_name``'s primary key, with that column."""
    found = []
    for table in Base.metadata.sorted_tables:
        for key in table.foreign_keys:
            if key.column.table.name == table_name and table.name != table_name:
                found.append((table, key.parent))
    return found


def _batch(table: sa.Table, column: sa.Column[object], value: object, limit: int) -> sa.Delete:
    keys = list(table.primary_key.columns)
    chosen = sa.select(*keys).where(column == value).limit(limit)
    target = keys[0] if len(keys) == 1 else sa.tuple_(*keys)
    return sa.delete(table).where(target.in_(chosen))


def purge_row(
    engine: Engine,
    table_name: str,
    key: object,
    *,
    batch: int,
    stop: threading.Event | None = None,
) -> int:
    """Delete the rows that reference ``table_name``'s row ``key``, ``batch`` rows a
    transaction, then that row. Returns the number of rows deleted (the row included)."""
    tx = writer(engine)
    table = Base.metadata.tables[table_name]
    (primary,) = table.primary_key.columns
    deleted = 0
    for child, column in referencing(table_name):
        while True:
            if stop is not None and stop.is_set():
                raise PurgeStopped(f"{table_name} {key}: stopped after {deleted} rows")
            with tx.begin() as conn:
                count = conn.execute(_batch(child, column, key, batch)).rowcount
            deleted += count
            if count < batch:
                break
    with tx.begin() as conn:
        deleted += conn.execute(sa.delete(table).where(primary == key)).rowcount
    return deleted
