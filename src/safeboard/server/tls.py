"""Server-side ``SSLContext`` meeting Mozilla's intermediate or modern profile (S10)."""

from __future__ import annotations

import ctypes
import logging
import ssl
import sys
import sysconfig

from safeboard.errors import ConfigError
from safeboard.server.certificates import TlsMaterial

__all__ = ["GROUPS", "MOZILLA_TLS12_CIPHERS", "server_ssl_context"]

logger = logging.getLogger("safeboard.tls")

# Mozilla guidelines 6.0, intermediate: the six ECDHE AEAD suites for TLS 1.2. TLS 1.3
# suites are OpenSSL's defaults, which are Mozilla's three.
MOZILLA_TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
GROUPS = "X25519:prime256v1:secp384r1"
_FALLBACK_GROUP = "prime256v1"
_PROFILES = ("intermediate", "modern")
_SSL_CTRL_SET_GROUPS_LIST = 92
_PYOBJECT_HEAD_SIZE = 16  # ob_refcnt + ob_type on a normal 64-bit CPython build


def server_ssl_context(material: TlsMaterial, profile: str) -> ssl.SSLContext:
    """A context serving ``material`` with Mozilla's ``intermediate`` or ``modern`` profile."""
    if profile not in _PROFILES:
        raise ConfigError(f"unknown TLS profile {profile!r}: use intermediate or modern")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if profile == "modern" else ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(MOZILLA_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # Mozilla: server_preferred_order False
    ctx.set_alpn_protocols(["http/1.1"])
    _restrict_groups(ctx)

    def refuse_passphrase() -> bytes:  # instead of OpenSSL prompting on the terminal
        raise ConfigError(f"{material.key_path} is encrypted: give an unencrypted key (0600)")

    try:
        ctx.load_cert_chain(material.cert_path, material.key_path, password=refuse_passphrase)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot serve {material.cert_path} with {material.key_path} ({exc}): "
            "check both files (PEM, matching, key unencrypted and at least P-256 or RSA-2048)"
        ) from None
    return ctx


def _restrict_groups(ctx: ssl.SSLContext) -> None:
    """Offer exactly X25519, P-256 and P-384 for key exchange, or P-256 alone if we cannot."""
    set_groups = getattr(ctx, "set_groups", None)  # Python 3.15+
    if set_groups is not None:
        try:
            set_groups(GROUPS)
        except (ssl.SSLError, ValueError) as exc:
            logger.warning("SSLContext.set_groups(%r) failed (%s)", GROUPS, exc)
        else:
            return
    elif _ctypes_set_groups(ctx):
        return
    logger.warning(
        "cannot limit TLS key-exchange groups to %s on this Python; offering %s only",
        GROUPS,
        _FALLBACK_GROUP,
    )
    ctx.set_ecdh_curve(_FALLBACK_GROUP)


def _layout_known() -> bool:
    """True on a normal 64-bit, GIL-enabled CPython, where ``SSL_CTX*`` follows PyObject_HEAD."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return (
        sys.implementation.name == "cpython"
        # PySSLContext starts with its SSL_CTX* in 3.11 to 3.14 (checked in their sources);
        # later versions are expected to have SSLContext.set_groups instead.
        and (3, 11) <= sys.version_info[:2] <= (3, 14)
        and sys.maxsize > 2**32
        and object.__basicsize__ == _PYOBJECT_HEAD_SIZE  # not a Py_TRACE_REFS build
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
        and (is_gil_enabled is None or bool(is_gil_enabled()))
    )


def _ctypes_set_groups(ctx: ssl.SSLContext) -> bool:
    """Set the group list through OpenSSL's ``SSL_CTX_ctrl``; True if it took effect.

    Python 3.11 to 3.14 expose only ``set_ecdh_curve`` (one group). The pointer read from
    the ``SSLContext`` object is cross-checked against two values Python itself reports
    before OpenSSL is asked to change anything.
    """
    if not _layout_known():
        return False
    try:
        import _ssl  # noqa: PLC0415 -- CPython's extension module, whose libssl we call

        lib = ctypes.CDLL(_ssl.__file__)
        get_level, get_options, ctrl = (
            lib.SSL_CTX_get_security_level,
            lib.SSL_CTX_get_options,
            lib.SSL_CTX_ctrl,
        )
    except (ImportError, AttributeError, OSError):
        return False
    get_level.argtypes, get_level.restype = [ctypes.c_void_p], ctypes.c_int
    get_options.argtypes, get_options.restype = [ctypes.c_void_p], ctypes.c_uint64
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    ctrl.restype = ctypes.c_long
    ptr = ctypes.c_void_p.from_address(id(ctx) + _PYOBJECT_HEAD_SIZE).value
    if not ptr or get_level(ptr) != ctx.security_level or get_options(ptr) != int(ctx.options):
        return False
    return bool(ctrl(ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, GROUPS.encode("ascii")) == 1)
