"""Storage: the SQLAlchemy engine, the declarative base and schema migrations.

Domain packages put their tables on :class:`Base`; the server builds the engine with
:func:`create_engine`, then calls :func:`upgrade` and :func:`ensure_instance` at start.
"""

from safeboard.storage.engine import (
    BEGIN_IMMEDIATE,
    BINARY_RESULTS,
    SUPPORTED_URLS,
    create_engine,
    ping,
    writer,
)
from safeboard.storage.migrate import (
    current_revision,
    ensure_instance,
    head_revision,
    open_database,
    pending_model_changes,
    upgrade,
)
from safeboard.storage.models import Base, Blob, InstanceRow, UtcDateTime

__all__ = [
    "BEGIN_IMMEDIATE",
    "BINARY_RESULTS",
    "SUPPORTED_URLS",
    "Base",
    "Blob",
    "InstanceRow",
    "UtcDateTime",
    "create_engine",
    "current_revision",
    "ensure_instance",
    "head_revision",
    "open_database",
    "pending_model_changes",
    "ping",
    "upgrade",
    "writer",
]
