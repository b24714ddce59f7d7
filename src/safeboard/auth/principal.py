"""Who is making a request: the result of the identity chain, input of the authorizer."""

from __future__ import annotations

from dataclasses import dataclass

from safeboard.auth.permissions import CredentialKind, Role, Scope

__all__ = ["Principal"]


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: Role
    credential: CredentialKind
    # The widest scope the credential carries: sessions carry ADMIN (bounded by the role).
    scope: Scope
    # API keys restricted to one project reach nothing else.
    project_id: int | None = None
    session_hash: str | None = None
    key_id: str | None = None
    # An enrolled agent (``credential`` AGENT): no user behind it (``user_id`` 0,
    # ``username`` ``agent:<name>``).
    agent_id: str | None = None
    # A task's token (``credential`` TASK): bound to one attempt of one task and to its
    # run (``project_id`` is the run's project). ``user_id`` is the task's submitter, on
    # whose behalf uploads are counted; ``username`` is ``task:<id>``.
    task_id: int | None = None
    attempt: int | None = None
    run_id: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        if self.task_id is not None:
            return f"task:{self.task_id} (attempt {self.attempt}, run {self.run_id})"
        if self.agent_id is not None:
            return f"{self.username} ({self.agent_id})"
        via = f"key:{self.key_id}" if self.key_id else "session"
        return f"user:{self.username} ({via})"
