"""How the agent reaches its server (S13): TLS verified against the CA it pinned at
enrollment, and nothing else; with ``--insecure-skip-verify`` a warning on every
connection. The credential travels only in ``Authorization: Bearer``."""

from __future__ import annotations

from collections.abc import Callable

from safeboard.client import ApiClient, CertificateInfo, Client, PinnedContext, pinned_context
from safeboard.client.retry import INTERACTIVE_POLICY, RetryPolicy

__all__ = ["INSECURE_WARNING", "client_for", "pinned_to"]

INSECURE_WARNING = (
    "WARNING: --insecure-skip-verify: the server's TLS certificate is NOT checked; anyone "
    "on the network path can pose as {url} and take this agent's credential"
)


def pinned_to(url: str, anchor: CertificateInfo) -> PinnedContext:
    """An SSL context that trusts ``anchor`` alone (a CA: host name checked; a server's own
    certificate: its fingerprint is the identity) and compares it at every handshake."""
    return pinned_context(
        url,
        anchor.fingerprint,
        anchor_pem=anchor.pem,
        pins_ca=anchor.is_ca,
        changed_hint=(
            "The server's CA is not the one this agent enrolled with: if the admin replaced "
            "it, enroll again with a new join string (`safeboard agent join`)"
        ),
    )


def client_for(
    url: str,
    *,
    credential: str | None,
    ca_pem: str,
    insecure: bool,
    warn: Callable[[str], None],
    retry: RetryPolicy = INTERACTIVE_POLICY,
) -> Client:
    """A typed client for the agent's calls (``retry``: its policy for repeatable ones)."""
    if insecure and url.startswith("https:"):
        warn(INSECURE_WARNING.format(url=url))
        api = ApiClient(url, credential, verify=False)
    elif url.startswith("https:"):
        context = pinned_to(url, CertificateInfo.from_pem(ca_pem))
        api = ApiClient(url, credential, verify=context)
    else:
        api = ApiClient(url, credential)  # plain HTTP: ApiClient allows loopback only
    return Client(api, retry=retry)
