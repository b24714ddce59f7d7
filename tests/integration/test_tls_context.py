"""The server's SSLContext under uvicorn, graded by sslyze against Mozilla's profiles (S10)."""

from __future__ import annotations

import dataclasses
import http.client
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from safeboard.errors import ConfigError
from safeboard.server import tls
from safeboard.server.certificates import TlsMaterial, prepare_tls
from safeboard.server.connections import Admission, ConnectionLimits, gated_protocol
from safeboard.server.tls import server_ssl_context
from safeboard.settings import Settings
from tests.support.inproc import served_in_thread
from tests.support.tlsscan import MOZILLA_GROUPS, check_mozilla, handshake, offered_groups

PROFILES = ["intermediate", "modern"]


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest ASGI app: 200 "ok" on every request."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@dataclass(frozen=True)
class RunningServer:
    port: int
    material: TlsMaterial
    profile: str

    @property
    def ca_file(self) -> Path:
        assert self.material.ca_path is not None
        return self.material.ca_path


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    data_dir = tmp_path_factory.mktemp("tls") / "data"
    secure = {"session_secret": secrets.token_urlsafe(32), "signing_key": secrets.token_urlsafe(32),
              "task_secrets_key": secrets.token_urlsafe(32)}  # fmt: skip
    return prepare_tls(Settings(data_dir=data_dir, secure=secure, tls={"enabled": True}))


@pytest.fixture(scope="module", params=PROFILES)
def server(request: pytest.FixtureRequest, material: TlsMaterial) -> Iterator[RunningServer]:
    profile: str = request.param
    # As `safeboard server` serves: the handshake runs in the connection gate.
    http = gated_protocol(
        Admission(ConnectionLimits(head_timeout=5, total=64, per_client=64)),
        server_ssl_context(material, profile),
    )
    with served_in_thread(hello_app, http) as port:
        yield RunningServer(port, material, profile)


@pytest.mark.tls
def test_meets_mozilla_profile(server: RunningServer) -> None:
    check_mozilla(server.port, server.ca_file, server.profile)


@pytest.mark.tls
def test_offers_exactly_mozillas_groups(server: RunningServer) -> None:
    assert offered_groups(server.port, server.ca_file) == MOZILLA_GROUPS


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_refuses_tls_1_0_and_1_1(server: RunningServer, version: ssl.TLSVersion) -> None:
    assert handshake(server.port, version) is None


def test_tls_1_2_only_with_intermediate(server: RunningServer) -> None:
    expected = "TLSv1.2" if server.profile == "intermediate" else None
    assert handshake(server.port, ssl.TLSVersion.TLSv1_2, server.ca_file) == expected
    assert handshake(server.port, ssl.TLSVersion.TLSv1_3, server.ca_file) == "TLSv1.3"


def test_https_request_verified_by_the_local_ca(server: RunningServer) -> None:
    ctx = ssl.create_default_context(cafile=server.ca_file)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"ok")
        assert isinstance(conn.sock, ssl.SSLSocket)
        assert conn.sock.selected_alpn_protocol() == "http/1.1"
    finally:
        conn.close()


@pytest.mark.parametrize("profile", PROFILES)
def test_context_settings(material: TlsMaterial, profile: str) -> None:
    ctx = server_ssl_context(material, profile)
    minimum = ssl.TLSVersion.TLSv1_3 if profile == "modern" else ssl.TLSVersion.TLSv1_2
    assert ctx.minimum_version == minimum
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == set(tls.MOZILLA_TLS12_CIPHERS.split(":"))


def test_groups_set_through_openssl_on_this_python() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert tls._ctypes_set_groups(ctx)


def test_groups_fall_back_to_p256_with_a_warning(
    material: TlsMaterial, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tls, "_ctypes_set_groups", lambda _ctx: False)
    with caplog.at_level("WARNING", logger="safeboard.tls"):
        server_ssl_context(material, "intermediate")
    assert "offering prime256v1 only" in caplog.text


def test_unknown_profile_is_a_config_error(material: TlsMaterial) -> None:
    with pytest.raises(ConfigError, match="unknown TLS profile"):
        server_ssl_context(material, "old")


def test_unloadable_files_are_a_config_error(material: TlsMaterial, tmp_path: Path) -> None:
    broken = dataclasses.replace(material, cert_path=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        server_ssl_context(broken, "intermediate")


def test_encrypted_key_is_refused_without_a_prompt(material: TlsMaterial, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(material.key_path.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(ConfigError, match="is encrypted"):
        server_ssl_context(dataclasses.replace(material, key_path=encrypted), "modern")
