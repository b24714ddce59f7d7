"""The agent: the program that runs on a GPU machine and serves the server's queue.

It talks to the server over HTTPS through ``safeboard.client`` only (import-linter: no
server code). This part enrolls the machine (``join``: the join string pins the server's
CA, checked before the secret is sent), keeps its state (``agent.json``, 0600), reports
the machine's inventory (``hello``), and serves the queue (``run``: runner.py leases,
attempt.py runs one task).
"""

from __future__ import annotations

from safeboard.agent.connection import client_for
from safeboard.agent.enroll import Joined, JoinPinMismatch, join, verified_anchor
from safeboard.agent.inventory import FAKE_GPUS_ENV, Gpu, Machine, detect
from safeboard.agent.joinstring import JoinString, parse_join_string
from safeboard.agent.runner import Runner, RunOptions
from safeboard.agent.state import STATE_DIR_ENV, AgentState, default_state_dir, load, save

__all__ = [
    "FAKE_GPUS_ENV",
    "STATE_DIR_ENV",
    "AgentState",
    "Gpu",
    "JoinPinMismatch",
    "JoinString",
    "Joined",
    "Machine",
    "RunOptions",
    "Runner",
    "client_for",
    "default_state_dir",
    "detect",
    "join",
    "load",
    "parse_join_string",
    "save",
    "verified_anchor",
]
