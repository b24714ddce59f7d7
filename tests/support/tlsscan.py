"""TLS conformance probes: sslyze scans and a stdlib handshake probe.

Shared by the in-process uvicorn tests and the end-to-end tests against a real server; all
of them talk to 127.0.0.1 only. sslyze is imported inside the functions that use it, so the
stdlib probe works (and ``-m "not tls"`` deselects the scans) where sslyze is missing.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sslyze import ScanCommand, ServerScanResult

__all__ = ["MOZILLA_GROUPS", "check_mozilla", "handshake", "offered_groups", "scan"]

# As sslyze names them (OpenSSL calls P-256 "prime256v1").
MOZILLA_GROUPS = frozenset({"X25519", "secp256r1", "secp384r1"})


def scan(
    port: int,
    ca_file: Path,
    commands: Iterable[ScanCommand] | None = None,
    hostname: str = "localhost",
) -> ServerScanResult:
    """Run sslyze ``commands`` (default: what the Mozilla checker needs) on 127.0.0.1:``port``.

    ``ca_file`` is the trust anchor for certificate validation. Fails on any command that
    did not complete, showing sslyze's trace.
    """
    from sslyze import (
        CertificateInfoExtraArgument,
        ScanCommand,
        ScanCommandAttemptStatusEnum,
        ScanCommandsExtraArguments,
        Scanner,
        ServerNetworkLocation,
        ServerScanRequest,
        ServerScanStatusEnum,
    )
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    )

    wanted = set(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER if commands is None else commands)
    extra = ScanCommandsExtraArguments()
    if ScanCommand.CERTIFICATE_INFO in wanted:  # sslyze refuses arguments for unused commands
        extra = ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file)
        )
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=hostname, port=port, ip_address="127.0.0.1"),
        scan_commands=wanted,
        scan_commands_extra_arguments=extra,
    )
    scanner = Scanner(per_server_concurrent_connections_limit=4)
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    for command in wanted:  # a plugin that crashed (a warning turned error, say) shows here
        attempt = getattr(result.scan_result, command.value)
        if attempt.status != ScanCommandAttemptStatusEnum.COMPLETED:
            trace = "".join(attempt.error_trace.format()) if attempt.error_trace else ""
            raise AssertionError(f"sslyze {command.value}: {attempt.error_reason}\n{trace}")
    return result


def check_mozilla(port: int, ca_file: Path, profile: str) -> None:
    """Raise ``ServerNotCompliantWithTlsConfiguration`` (with ``.issues``) unless compliant."""
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        MozillaTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    config = MozillaTlsConfiguration.get(TlsConfigurationEnum(profile))
    check_server_against_tls_configuration(scan(port, ca_file), config)


def offered_groups(port: int, ca_file: Path) -> set[str]:
    """Names of the key-exchange groups the server accepts (sslyze ELLIPTIC_CURVES)."""
    from sslyze import ScanCommand

    result = scan(port, ca_file, {ScanCommand.ELLIPTIC_CURVES})
    assert result.scan_result is not None
    curves = result.scan_result.elliptic_curves.result
    assert curves is not None
    return {curve.name for curve in curves.supported_curves or []}


def handshake(
    port: int, version: ssl.TLSVersion, ca_file: Path | None = None, hostname: str = "localhost"
) -> str | None:
    """Offer only ``version``; the protocol negotiated, or None if the server refused.

    The client allows every cipher (``@SECLEVEL=0``) so that TLS 1.0 and 1.1 can be offered
    at all; the refusal then comes from the server. With ``ca_file`` the certificate and
    host name are verified too, and a verification failure raises.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(ca_file)
    with warnings.catch_warnings():
        # Python deprecates TLSv1 and TLSv1_1 as settings; offering them is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
            ctx.wrap_socket(sock, server_hostname=hostname) as tls,
        ):
            return tls.version()
    except ssl.SSLCertVerificationError:
        raise  # a trust problem is not a protocol refusal
    except (ssl.SSLError, ConnectionResetError):
        return None
