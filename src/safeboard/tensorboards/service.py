"""TensorBoard use cases: open an instance for a user (on a directory of the server, or
over runs they may read) and hand out its entry link."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa

from safeboard.accounts import repository as accounts
from safeboard.audit import service as audit
from safeboard.audit.events import AuditAction
from safeboard.auth.permissions import Permission, Role
from safeboard.auth.principal import Principal
from safeboard.errors import Conflict, InvalidRequest, NotFound
from safeboard.runs.access import run_for
from safeboard.settings import Settings
from safeboard.tensorboards.proxy import ENTER_PATH, SAME_ORIGIN_ENTER_PATH, TensorboardOrigin
from safeboard.tensorboards.runsets import EventFiles, fill_logdir
from safeboard.tensorboards.supervisor import Instance, Supervisor, extra_installed
from safeboard.tensorboards.tickets import Entry, Tickets

__all__ = ["Opened", "TensorboardService"]

INSTALL_HINT = "TensorBoard is not installed: pip install 'safeboard[tensorboard]'"


@dataclass(frozen=True)
class Opened:
    instance_id: str
    link: str  # the origin's /enter page with a one-time ticket in the fragment
    started: bool  # False: the user's running instance on that directory


class TensorboardService:
    def __init__(self, engine: sa.Engine, settings: Settings, files: EventFiles) -> None:
        """``files``: the runs' event files kept as artifacts (artifacts/tbfiles.py)."""
        self.engine = engine
        self.files = files
        # Who opened each instance over runs (their credential's reach: a key restricted
        # to a project stays restricted), for the proxy's checks while it is open.
        self._readers: dict[str, Principal] = {}
        self.supervisor = Supervisor(settings.data_dir, settings.tensorboard)
        self.tickets = Tickets(settings.tensorboard.cookie_minutes * 60)
        self.origin: str | None = None  # set when the server opens the listener
        self.enter_path = ENTER_PATH

    def application(
        self, *, secure: bool, recheck_seconds: float = 30.0, same_origin: bool = False
    ) -> TensorboardOrigin:
        """The ASGI application of TensorBoard's origin (or of ``/tb/`` on the main origin,
        ``same_origin``); it asks whether an account still stands at entry and every
        ``recheck_seconds`` after."""
        return TensorboardOrigin(
            self.supervisor,
            self.tickets,
            secure=secure,
            still_allowed=self.still_allowed,
            recheck_seconds=recheck_seconds,
            enter_path=SAME_ORIGIN_ENTER_PATH if same_origin else ENTER_PATH,
        )

    def still_allowed(self, instance: Instance) -> bool:
        """Whether the owner may still use the instance: an active account, and an admin
        for an instance on a directory of the server (admins alone may open one), or one
        who may still read every run of an instance over runs."""
        with self.engine.connect() as conn:
            user = accounts.get(conn, instance.owner_id)
            if user is None or not user.is_active:
                return False
            if not instance.run_ids:
                return user.role is Role.ADMIN
            reader = self._readers.get(instance.id)
            if reader is None:
                return False
            return self._readable(conn, replace(reader, role=user.role), instance.run_ids)

    @staticmethod
    def _readable(conn: sa.Connection, principal: Principal, run_ids: frozenset[str]) -> bool:
        try:
            for run_id in sorted(run_ids):
                run_for(conn, principal, run_id, Permission.PROJECTS_READ)
        except NotFound:
            return False
        return True

    def with_event_files(self, run_ids: Sequence[str]) -> set[str]:
        """Those of these runs that hold event files (the dashboard shows the button for
        them when TensorBoard is available); the caller has checked read access."""
        if self.origin is None:
            return set()
        return set(self.files.of_runs(run_ids))

    def listening(self, origin: str, *, same_origin: bool = False) -> None:
        """Links name ``origin``: TensorBoard's own, or safeboard's (``same_origin``)."""
        self.origin = origin
        self.enter_path = SAME_ORIGIN_ENTER_PATH if same_origin else ENTER_PATH

    def _listening(self) -> str:
        if self.origin is None:
            raise Conflict(
                INSTALL_HINT
                if not extra_installed()
                else "TensorBoard's listener is off on this server (tensorboard.enabled)"
            )
        return self.origin

    def open_logdir(
        self, user_id: int, username: str, logdir: Path, *, address: str = ""
    ) -> Opened:
        """TensorBoard on ``logdir`` for the user (started if they run none on it), and
        a one-time link into it. Only its owner may enter it (docs/tensorboard.md)."""
        origin = self._listening()
        instance, started = self.supervisor.start(user_id, username, logdir)
        if started:
            self._audit(username, instance, address, {"logdir": str(instance.logdir)})
        ticket = self.tickets.mint(Entry(user_id, username, instance.id))
        return Opened(instance.id, f"{origin}{self.enter_path}#ticket={ticket}", started)

    def open_runs(
        self, principal: Principal, run_ids: Sequence[str], *, address: str = ""
    ) -> Opened:
        """TensorBoard over the event files of these runs (kept as their artifacts), for a
        principal who may read every one of them: 404 for any other, the same answer
        whether it exists or not. The same user over the same runs reuses an instance."""
        origin = self._listening()
        wanted = frozenset(run_ids)
        with self.engine.connect() as conn:
            names = {
                run_id: run_for(conn, principal, run_id, Permission.PROJECTS_READ)[0].name
                for run_id in sorted(wanted)
            }
        if not self.files.of_runs(sorted(wanted)):
            raise InvalidRequest(
                "these runs hold no TensorBoard event files: `safeboard import tensorboard` "
                "and run.sync_tensorboard() keep them (docs/tensorboard.md)"
            )

        def fill(logdir: Path) -> None:  # again on reuse: files kept since
            fill_logdir(logdir, names, self.files.of_runs(sorted(wanted)), self.files)

        user, name = principal.user_id, principal.username
        instance, started = self.supervisor.start_runs(user, name, wanted, fill)
        live = {i.id for i in self.supervisor.instances()}
        self._readers = {k: v for k, v in self._readers.items() if k in live}
        self._readers[instance.id] = principal
        if started:
            self._audit(name, instance, address, {"runs": sorted(wanted)})
        ticket = self.tickets.mint(Entry(user, name, instance.id))
        return Opened(instance.id, f"{origin}{self.enter_path}#ticket={ticket}", started)

    def _audit(
        self, actor: str, instance: Instance, address: str, detail: dict[str, object]
    ) -> None:
        audit.record(
            self.engine,
            action=AuditAction.TENSORBOARD_STARTED,
            actor=actor,
            target=instance.id,
            address=address,
            detail=detail,
        )

    def close(self) -> None:
        self.supervisor.stop_all()
