"""Why a queued task waits when no enrolled agent could ever take it: none is enrolled,
or none has that many GPUs or those labels. The task stays queued (an agent may join
later), and the submitter, ``task show`` and the task page say so with the fix, instead
of the task waiting in silence. An agent that has not said hello yet (its machine
unknown) could take anything, so nothing is said while one is enrolled."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from safeboard.agents.queries import Offer, offers

__all__ = ["waiting_reason"]

_FIX = "an admin adds one with `safeboard agent token` (then `safeboard agent join` on it)"


def waiting_reason(conn: Connection, gpus: int, labels: Sequence[str]) -> str | None:
    """The sentence that says why a task needing ``gpus`` and ``labels`` cannot be
    leased by any enrolled agent, or None when one could take it."""
    return reason_among(offers(conn), gpus, labels)


def reason_among(found: Sequence[Offer], gpus: int, labels: Sequence[str]) -> str | None:
    if not found:
        return f"no agent is enrolled: it runs when one joins; {_FIX}"
    wanted = set(labels)
    if any(not o.known or (o.gpus >= gpus and wanted <= o.labels) for o in found):
        return None
    needs = [f"{gpus} GPU(s)"] if gpus else []
    if wanted:
        needs.append(f"the labels {', '.join(sorted(wanted))}")
    return (f"no enrolled agent offers {' and '.join(needs)}: it runs when one that does "
            f"joins; {_FIX}")  # fmt: skip
