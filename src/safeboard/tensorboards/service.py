"""TensorBoard use cases: open an instance for a user and hand out its entry link."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from safeboard.accounts import repository as accounts
from safeboard.audit import service as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.permissions import Role
from safeboard.errors import Conflict
from safeboard.settings import Settings
from safeboard.tensorboards.proxy import TensorboardOrigin
from safeboard.tensorboards.supervisor import Supervisor, extra_installed
from safeboard.tensorboards.tickets import Entry, Tickets

__all__ = ["Opened", "TensorboardService"]

INSTALL_HINT = "TensorBoard is not installed: pip install 'safeboard[tensorboard]'"


@dataclass(frozen=True)
class Opened:
    instance_id: str
    link: str  # the origin's /enter page with a one-time ticket in the fragment
    started: bool  # False: the user's running instance on that directory


class TensorboardService:
    def __init__(self, engine: sa.Engine, settings: Settings) -> None:
        self.engine = engine
        self.supervisor = Supervisor(settings.data_dir, settings.tensorboard)
        self.tickets = Tickets(settings.tensorboard.cookie_minutes * 60)
        self.origin: str | None = None  # set when the server opens the listener

    def application(self, *, secure: bool, recheck_seconds: float = 30.0) -> TensorboardOrigin:
        """The ASGI application of TensorBoard's origin; it asks whether an account still
        stands at entry and every ``recheck_seconds`` after."""
        return TensorboardOrigin(
            self.supervisor,
            self.tickets,
            secure=secure,
            still_allowed=self.still_allowed,
            recheck_seconds=recheck_seconds,
        )

    def still_allowed(self, user_id: int) -> bool:
        """Whether the account may still use its instances: active, and an admin (who
        alone may open TensorBoard on a directory of the server)."""
        with self.engine.connect() as conn:
            user = accounts.get(conn, user_id)
        return user is not None and user.is_active and user.role is Role.ADMIN

    def listening(self, origin: str) -> None:
        self.origin = origin

    def open_logdir(
        self, user_id: int, username: str, logdir: Path, *, address: str = ""
    ) -> Opened:
        """TensorBoard on ``logdir`` for the user (started if they run none on it), and
        a one-time link into it. Only its owner may enter it (docs/tensorboard.md)."""
        if self.origin is None:
            raise Conflict(
                INSTALL_HINT
                if not extra_installed()
                else "TensorBoard's listener is off on this server (tensorboard.enabled)"
            )
        instance, started = self.supervisor.start(user_id, username, logdir)
        if started:
            audit.record(
                self.engine,
                action=AuditAction.TENSORBOARD_STARTED,
                actor=username,
                target=instance.id,
                address=address,
                detail={"logdir": str(instance.logdir)},
            )
        ticket = self.tickets.mint(Entry(user_id, username, instance.id))
        return Opened(instance.id, f"{self.origin}/enter#ticket={ticket}", started)

    def close(self) -> None:
        self.supervisor.stop_all()
