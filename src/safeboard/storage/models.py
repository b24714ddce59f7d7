"""The declarative base every table derives from, and the installation's identity row.

Domain packages define their tables in their own ``models.py`` on :class:`Base`. The
naming convention gives every constraint and index a deterministic name, so Alembic
autogenerate is stable and migrations can drop constraints by name on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Dialect,
    Integer,
    LargeBinary,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["NAMING_CONVENTION", "Base", "Blob", "InstanceRow", "UtcDateTime"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, stored in UTC and read back as aware UTC on both backends.

    SQLite keeps no zone, so SQLAlchemy would hand back naive values there; this type
    refuses naive input and attaches UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one, e.g. datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Blob(LargeBinary):
    """Bytes handed to the driver as they are. Both drivers (sqlite3, psycopg) take
    ``bytes`` for a BLOB/bytea; LargeBinary's bind processor wraps every value in the
    driver's ``Binary`` first, a Python call per value that was 4% of a sweep's server
    time (P9)."""

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:  # noqa: ARG002
        return None


class Base(DeclarativeBase):
    """Base of every table; its metadata is what migrations are checked against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class InstanceRow(Base):
    """This installation's identity: exactly one row, made at first start."""

    __tablename__ = "instance"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    instance_id: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
