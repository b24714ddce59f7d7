"""``live_events``: the recent live updates, each with the id a stream sends as ``id:``.

A row is written in the transaction of the change it announces (``EventBus.
publish_at_commit``), so its id exists exactly when the change does, on every replica
sharing the database and across restarts. A stream that reconnects with ``Last-Event-ID``
replays the rows after it (safeboard.events). Rows older than the replay window are
trimmed as new ones arrive; the newest row always stays, so ids never go back. Ids become
visible in id order (SQLite: one writer; PostgreSQL: ``EventBus``'s advisory lock), so a
stream's last id is a position no later event can fall behind.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from safeboard.storage.models import Base, UtcDateTime

__all__ = ["LiveEventRow"]


class LiveEventRow(Base):
    __tablename__ = "live_events"
    # SQLite: AUTOINCREMENT, so an id is never handed out twice, even after a trim.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012  (SQLAlchemy's form)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    project_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    run_id: Mapped[str] = mapped_column(String(32), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    data: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
