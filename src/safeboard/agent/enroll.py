"""``join``: check the server against the join string's pin, then exchange the token for
the agent's own credential and store it (S13, S14).

Order matters: the certificate chain is fetched on a connection that sends nothing; its
CA's key must hash to the pin; only then is a connection opened that trusts that CA alone
(compared again at its handshake) and carries the secret. A mismatch ends with both
fingerprints and nothing sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

from safeboard.agent.connection import INSECURE_WARNING, client_for
from safeboard.agent.inventory import Machine
from safeboard.agent.joinstring import JoinString, parse_join_string
from safeboard.agent.state import STATE_FILE, AgentState, save
from safeboard.client import CertificateChanged, CertificateInfo, fetch_chain, trust_anchor
from safeboard.client.cleartext import require_private_transport
from safeboard.errors import ConfigError

__all__ = ["JoinPinMismatch", "Joined", "join", "verified_anchor"]


class JoinPinMismatch(CertificateChanged):
    """The server's CA is not the one the join string pins: nothing was sent."""

    def __init__(self, url: str, expected: str, presented: str) -> None:
        super().__init__(url, expected, presented)
        self.message = (
            f"the server at {url} is not the one this join string names: its CA key hashes "
            f"to {presented}, the join string pins {expected}; nothing was sent. Check the "
            "address (a proxy or another server in between?) or ask the admin for a new "
            "join string"
        )
        self.args = (self.message,)


class Joined:
    """What ``join`` did: where the state went and which agent this machine is now."""

    def __init__(self, state: AgentState, path: Path) -> None:
        self.state, self.path = state, path


def verified_anchor(parsed: JoinString, timeout: float = 10.0) -> CertificateInfo:
    """The certificate the server presents as its anchor, checked against the pin. Only a
    TLS handshake happens here: no request, no secret."""
    anchor = trust_anchor(fetch_chain(parsed.url, timeout))
    presented = anchor.spki_pin
    if not hmac.compare_digest(presented.encode(), parsed.pin.encode()):
        raise JoinPinMismatch(parsed.url, parsed.pin, presented)
    return anchor


def join(
    text: str,
    state_dir: Path,
    *,
    machine: Machine,
    version: str,
    insecure: bool = False,
    warn: Callable[[str], None],
) -> Joined:
    """Enroll this machine with the server the join string names; store ``agent.json``.
    Refused before anything is sent when the state directory already holds an agent."""
    parsed = parse_join_string(text)
    if (state_dir / STATE_FILE).exists():
        raise ConfigError(
            f"this machine already joined a server ({state_dir / STATE_FILE}): to join "
            "again, move that file away (and have an admin revoke the old agent), or give "
            "another --state-dir"
        )
    require_private_transport(parsed.url)
    ca_pem = ""
    if parsed.url.startswith("https:") and insecure:
        warn(INSECURE_WARNING.format(url=parsed.url))
    elif parsed.url.startswith("https:"):
        ca_pem = verified_anchor(parsed).pem
    with client_for(
        parsed.url, credential=None, ca_pem=ca_pem, insecure=insecure, warn=lambda _: None
    ) as client:
        enrolled = client.enroll(
            parsed.token, hostname=machine.hostname, version=version, labels=machine.labels
        )
    state = AgentState(
        url=parsed.url,
        agent_id=enrolled.agent_id,
        name=enrolled.name,
        pool=enrolled.pool,
        credential=enrolled.credential,
        ca_pem=ca_pem,
        insecure=insecure,
    )
    return Joined(state, save(state_dir, state))
