"""The ``audit_log`` table: append-only, each row carrying the hash of the one before."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from safeboard.storage import Base, UtcDateTime

__all__ = ["AuditRow"]


class AuditRow(Base):
    __tablename__ = "audit_log"
    # By action (the admin's filter), and by action and target (the entries about one thing).
    __table_args__ = (Index("ix_audit_log_action_target", "action", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the chain's order
    at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)  # "user:alice", "cli:root"
    target: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="ok")
    address: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    detail: Mapped[str] = mapped_column(Text, nullable=False, default="{}")  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
