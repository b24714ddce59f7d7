"""Tasks' secrets, sealed at rest (issue 14; docs/agents.md, "Secrets").

- **Cipher.** AES-256-GCM (``cryptography``'s ``AESGCM``): a random 96-bit nonce per
  value, the task id and the secret's name as associated data, so a sealed value copied
  onto another task or name does not open. The 256-bit key is derived with HKDF-SHA256
  from ``secure.task_secrets_key`` (secrets.toml, generated at first start); a second
  output of the same HKDF gives the key's public id (``key_id``, 16 hex), stored with each
  value so that the right key is picked and a wrong one is named rather than guessed.
- **Rotation.** ``safeboard secrets rotate`` keeps the replaced key in
  ``secure.task_secrets_previous_keys``: values sealed under it still open, and each
  start re-seals them under the current key (``TaskSecrets.reseal``).
- **Lifetime.** A task's secrets live as long as its record (a retry copies them, sealed
  anew for the new task id); they go with the task (``ON DELETE CASCADE``).
- **Who sees them in clear.** Only the lease answer, to the agent that runs the attempt.
  Users see names (``secret_names``), never values; the audit log records names.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, Engine

from safeboard.jobs.models import TaskSecretRow
from safeboard.storage import writer

__all__ = ["NONCE_BYTES", "Sealed", "SecretBox", "SecretsUnreadable", "TaskSecrets"]

NONCE_BYTES = 12  # 96 bits: GCM's own size; random per value
_HKDF_INFO = b"safeboard task secrets v1"
_s = cast(sa.Table, TaskSecretRow.__table__)


class SecretsUnreadable(Exception):
    """A task's secrets cannot be opened with the keys this server holds."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class _Key:
    id: str
    aead: AESGCM


def _derive(material: str) -> _Key:
    out = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_HKDF_INFO).derive(
        material.encode()
    )
    # The id is a hash of the second half: public, and says nothing of the first.
    return _Key(hashlib.sha256(out[32:]).hexdigest()[:16], AESGCM(out[:32]))


def _associated(task_id: int, name: str) -> bytes:
    return f"safeboard task secret\x00{task_id}\x00{name}".encode()


class SecretBox:
    """Seals under the current key; opens under it or an earlier one. Never shows a key."""

    def __init__(self, key: str, previous: Sequence[str] = ()) -> None:
        self._current = _derive(key)
        self._keys = {self._current.id: self._current}
        for material in previous:
            derived = _derive(material)
            self._keys.setdefault(derived.id, derived)

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self._current.id!r}, keys={len(self._keys)})"

    @property
    def key_id(self) -> str:
        return self._current.id

    def seal(self, task_id: int, name: str, value: str) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.aead.encrypt(nonce, value.encode(), _associated(task_id, name))
        return Sealed(self._current.id, nonce, sealed)

    def open(self, task_id: int, name: str, sealed: Sealed) -> str:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise SecretsUnreadable(
                f"{name} was sealed under key {sealed.key_id}, which this server does not "
                "hold (was secure.task_secrets_key replaced?)"
            )
        try:
            plain = key.aead.decrypt(sealed.nonce, sealed.ciphertext, _associated(task_id, name))
        except InvalidTag:
            raise SecretsUnreadable(f"{name} fails its integrity check") from None
        return plain.decode()


class TaskSecrets:
    """The ``task_secrets`` table, in the caller's transaction (``store``, ``reveal``,
    ``names``) or its own (``reseal``). ``box`` None: a server without the key can
    queue and lease tasks that have no secrets, and refuses those that do."""

    def __init__(self, engine: Engine, box: SecretBox | None) -> None:
        self.engine = engine
        self.box = box

    def __repr__(self) -> str:
        return f"TaskSecrets({self.box!r})"

    def store(self, conn: Connection, task_id: int, values: Mapping[str, str]) -> None:
        if not values:
            return
        if self.box is None:
            raise SecretsUnreadable("this server holds no task_secrets_key")
        rows = []
        for name, value in values.items():
            sealed = self.box.seal(task_id, name, value)
            rows.append({"task_id": task_id, "name": name, "key_id": sealed.key_id,
                         "nonce": sealed.nonce, "ciphertext": sealed.ciphertext})  # fmt: skip
        conn.execute(sa.insert(_s), rows)

    def reveal(self, conn: Connection, task_id: int) -> dict[str, str]:
        """The task's secrets in clear (for its lease, or a retry's copy)."""
        found = conn.execute(
            sa.select(_s.c.name, _s.c.key_id, _s.c.nonce, _s.c.ciphertext)
            .where(_s.c.task_id == task_id)
            .order_by(_s.c.name)
        ).all()
        if found and self.box is None:
            raise SecretsUnreadable("this server holds no task_secrets_key")
        values = {}
        for name, key_id, nonce, ciphertext in found:
            assert self.box is not None  # noqa: S101  (checked above)
            values[name] = self.box.open(task_id, name, Sealed(key_id, nonce, ciphertext))
        return values

    @staticmethod
    def names(conn: Connection, task_ids: Iterable[int]) -> dict[int, list[str]]:
        """The names of each task's secrets (never the values), sorted."""
        ids = list(set(task_ids))
        named: dict[int, list[str]] = {task_id: [] for task_id in ids}
        if not ids:
            return named
        for task_id, name in conn.execute(
            sa.select(_s.c.task_id, _s.c.name).where(_s.c.task_id.in_(ids)).order_by(_s.c.name)
        ):
            named[task_id].append(name)
        return named

    def reseal(self) -> tuple[int, int]:
        """Re-seal under the current key every value sealed under an earlier one this
        server holds (after a rotation). Returns (re-sealed, left unreadable)."""
        if self.box is None:
            return 0, 0
        box, done, unreadable = self.box, 0, 0
        with writer(self.engine).begin() as conn:
            stale = conn.execute(
                sa.select(_s.c.task_id, _s.c.name, _s.c.key_id, _s.c.nonce, _s.c.ciphertext).where(
                    _s.c.key_id != box.key_id
                )
            ).all()
            for task_id, name, key_id, nonce, ciphertext in stale:
                try:
                    value = box.open(task_id, name, Sealed(key_id, nonce, ciphertext))
                except SecretsUnreadable:
                    unreadable += 1
                    continue
                sealed = box.seal(task_id, name, value)
                new = {"key_id": sealed.key_id, "nonce": sealed.nonce,
                       "ciphertext": sealed.ciphertext}  # fmt: skip
                where = (_s.c.task_id == task_id, _s.c.name == name)
                conn.execute(sa.update(_s).where(*where).values(new))
                done += 1
        return done, unreadable
