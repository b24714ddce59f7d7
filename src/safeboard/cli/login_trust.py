"""How ``safeboard login`` decides to trust a server, sending nothing until it has (S13).

In order: ``--ca-cert``; ``--fingerprint`` (the CA's, or the server certificate's); the pin
of an earlier login; the system's CAs; else the person confirms what the server presents on
a terminal. What gets pinned is the CA the server presents with its leaf (a generated
certificate), so renewals and new names verify silently; the leaf only when the chain holds
no CA that issued it. A pin of the server's own certificate stored by an earlier version is
replaced by the CA that issued it once the server proves that CA (same leaf, or a renewed
one whose CA signed the pinned leaf). A different CA stops the login before any
credential is sent; on a terminal the person may confirm it, as on first use.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # the client (httpx, cryptography) loads only when a command runs
    from safeboard.client import CertificateChanged, CertificateInfo, TrustStore

__all__ = ["trusted_context"]

_ADMIN_HINT = "check it with the server's admin, who sees it with `safeboard tls show`"


def _kind(cert: CertificateInfo) -> str:
    return "CA" if cert.is_ca else "server certificate"


def _show(
    origin: str, cert: CertificateInfo, headline: str, leaf: CertificateInfo | None = None
) -> None:
    click.echo(f"{origin} {headline}:")
    for line in cert.describe():
        click.echo(f"  {line}")
    if leaf is not None and leaf is not cert:  # what the CA vouches for today
        names = next((line for line in leaf.describe() if line.startswith("names:")), "")
        click.echo(f"  for its server certificate with {names or 'no names'}")


def _context(origin: str, cert: CertificateInfo) -> ssl.SSLContext:
    from safeboard.client import pinned_context

    return pinned_context(origin, cert.fingerprint, anchor_pem=cert.pem, pins_ca=cert.is_ca)


def _pin(origin: str, cert: CertificateInfo, trust: TrustStore, why: str = "") -> ssl.SSLContext:
    """Check that ``cert`` verifies the server now (nothing changed since we looked, and a
    pinned CA's leaf names the host), then store it as the pin of ``origin``."""
    from safeboard.client import probe, same_fingerprint

    context = _context(origin, cert)
    probe(origin, context)
    previous = trust.get(origin)
    path = trust.pin(origin, cert)
    replaced = ""
    if previous is not None and not same_fingerprint(previous.fingerprint, cert.fingerprint):
        replaced = f" (replaces {previous.fingerprint})"
    click.echo(f"pinned {cert.fingerprint} ({_kind(cert)}) for {origin} in {path}{replaced}")
    if why:
        click.echo(f"  {why}")
    return context


def trusted_context(
    origin: str, fingerprint: str | None, ca_cert: Path | None, trust: TrustStore
) -> ssl.SSLContext:
    """How to trust ``origin``, decided before any credential is sent."""
    from safeboard.client import (
        CertificateChanged,
        UntrustedCertificate,
        ca_context,
        fetch_chain,
        parse_fingerprint,
        probe,
        same_fingerprint,
        system_context,
        trust_anchor,
    )

    wanted = parse_fingerprint(fingerprint) if fingerprint is not None else None
    if ca_cert is not None:
        context = ca_context(ca_cert)
        served = probe(origin, context)
        if wanted is not None and not same_fingerprint(wanted, served.fingerprint):
            raise UntrustedCertificate(
                f"{origin} presents {served.fingerprint}, not {wanted}; nothing was sent"
            )
        return context
    if wanted is not None:
        return _named(origin, wanted, trust)
    pinned = trust.get(origin)
    if pinned is not None:
        try:
            probe(origin, _context(origin, pinned))  # not a byte of a credential sent
        except CertificateChanged as changed:
            return _changed(origin, pinned, changed, trust)
        return _upgraded(origin, pinned, trust)
    context = system_context()
    try:
        probe(origin, context)
    except UntrustedCertificate:
        pass
    else:
        return context
    chain = fetch_chain(origin)
    served = trust_anchor(chain)
    _show(origin, served, f"presents a {_kind(served)} that the system does not trust", chain[0])
    if not sys.stdin.isatty():
        raise UntrustedCertificate(
            f"not trusting {origin} without confirmation and there is no terminal to ask: "
            f"{_ADMIN_HINT}, then pass --fingerprint {served.fingerprint}"
        )
    click.echo(f"Compare the fingerprint with the one the server shows ({_ADMIN_HINT}).")
    if not click.confirm("Trust this certificate?", default=False):
        raise UntrustedCertificate(f"{origin} not trusted; nothing was sent")
    return _pin(origin, served, trust)


def _named(origin: str, wanted: str, trust: TrustStore) -> ssl.SSLContext:
    """``--fingerprint``: the CA's, or (as earlier versions showed) the server certificate's;
    either way the CA that issued the leaf is pinned when the server presents one."""
    from safeboard.client import UntrustedCertificate, fetch_chain, same_fingerprint, trust_anchor

    chain = fetch_chain(origin)
    anchor = trust_anchor(chain)
    if not any(same_fingerprint(wanted, cert.fingerprint) for cert in (anchor, chain[0])):
        raise UntrustedCertificate(
            f"{origin} presents the {_kind(anchor)} {anchor.fingerprint}, not the {wanted} "
            f"you gave; nothing was sent. {_ADMIN_HINT[0].upper()}{_ADMIN_HINT[1:]}"
        )
    headline = f"presents the {_kind(anchor)} you named"
    if not same_fingerprint(wanted, anchor.fingerprint):
        headline = "presents the CA that issued the server certificate you named"
    _show(origin, anchor, headline, chain[0])
    return _pin(origin, anchor, trust)


def _upgraded(origin: str, pinned: CertificateInfo, trust: TrustStore) -> ssl.SSLContext:
    """The pinned context; a pinned leaf that a presented CA issued is replaced by that CA."""
    from safeboard.client.trust import follow_leaf_pin

    followed = follow_leaf_pin(origin, pinned, trust)
    if followed is not pinned:
        click.echo(
            f"pinned {followed.fingerprint} (CA) for {origin} in {trust.path_for(origin)} "
            f"(replaces {pinned.fingerprint})"
        )
        click.echo("  the CA that issued the pinned server certificate: renewals need no new login")
    return _context(origin, followed)


def _changed(
    origin: str, pinned: CertificateInfo, changed: CertificateChanged, trust: TrustStore
) -> ssl.SSLContext:
    """The pin no longer matches: the renewal of a pinned leaf by its own CA is followed;
    any other change is refused, or confirmed by the person on a terminal."""
    from safeboard.client import fetch_chain, trust_anchor

    chain = fetch_chain(origin)
    anchor = trust_anchor(chain)
    if not pinned.is_ca and anchor.issued(pinned):
        why = "the server renewed its certificate; the CA that issued the pinned one issued it"
        return _pin(origin, anchor, trust, why)
    if not sys.stdin.isatty():
        raise changed
    click.echo(
        f"WARNING: the certificate of {origin} has changed (trusted: {pinned.fingerprint}). "
        "Someone may be impersonating the server; nothing was sent.",
        err=True,
    )
    _show(origin, anchor, f"now presents this {_kind(anchor)}", chain[0])
    click.echo(f"Only trust it if the server's admin confirms it ({_ADMIN_HINT}).")
    if not click.confirm("Trust the new certificate?", default=False):
        raise changed
    return _pin(origin, anchor, trust)
