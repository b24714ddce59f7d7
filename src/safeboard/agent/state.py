"""The agent's state on its machine: ``agent.json`` (0600) in a 0700 directory, holding
the server's URL, the CA certificate it verified at enrollment (PEM), the agent's id and
its credential. Default directory: ``$XDG_DATA_HOME/safeboard-agent`` (else
``~/.local/share/safeboard-agent``); ``--state-dir`` or ``SAFEBOARD_AGENT_STATE_DIR``."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safeboard.client.config import private_dir, write_private
from safeboard.errors import ConfigError

__all__ = ["STATE_DIR_ENV", "STATE_FILE", "AgentState", "default_state_dir", "load", "save"]

STATE_DIR_ENV = "SAFEBOARD_AGENT_STATE_DIR"
STATE_FILE = "agent.json"


@dataclass(frozen=True)
class AgentState:
    url: str
    agent_id: str
    name: str
    pool: str
    credential: str = field(repr=False)
    ca_pem: str = ""  # the CA (or pinned certificate) verified at enrollment; "" over HTTP
    insecure: bool = False  # enrolled with --insecure-skip-verify: never verifies TLS


def default_state_dir() -> Path:
    given = os.environ.get(STATE_DIR_ENV)
    if given:
        return Path(given).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "safeboard-agent"


def save(directory: Path, state: AgentState) -> Path:
    private_dir(directory)
    path = directory / STATE_FILE
    write_private(path, (json.dumps(asdict(state), indent=2) + "\n").encode())
    return path


def load(directory: Path) -> AgentState:
    path = directory / STATE_FILE
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path} is readable by group or others (mode {mode:o}): chmod 600 it"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
        return AgentState(**data)
    except FileNotFoundError:
        raise ConfigError(
            f"this machine has not joined a server ({path} is missing): run "
            "`safeboard agent join 'sbjoin1...'` with a join string from an admin"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is damaged ({type(exc).__name__}): join again") from None
