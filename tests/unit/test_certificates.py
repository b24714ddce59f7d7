"""Generated and given server certificates (S10)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import socket
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from safeboard.errors import ConfigError
from safeboard.server import certificates
from safeboard.server.addresses import machine_addresses, usable_address
from safeboard.server.certificates import (
    TlsMaterial,
    format_fingerprint,
    prepare_tls,
)
from safeboard.server.tls_report import RunningServer, describe_tls, running_server
from safeboard.settings import Settings

NOW = datetime.now(UTC)


def make_settings(data_dir: Path, **sections: Any) -> Settings:
    secure = {"session_secret": secrets.token_urlsafe(32), "signing_key": secrets.token_urlsafe(32),
              "task_secrets_key": secrets.token_urlsafe(32)}  # fmt: skip
    sections.setdefault("tls", {})
    sections["tls"].setdefault("enabled", True)
    return Settings(data_dir=data_dir, secure=secure, **sections)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(socket, "gethostname", lambda: "buildbox")
    monkeypatch.setattr(socket, "getfqdn", lambda *_: "buildbox.example.org")
    return tmp_path / "data"


def load_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def ext(cert: x509.Certificate, kind: type[Any]) -> x509.Extension[Any]:
    return cert.extensions.get_extension_for_class(kind)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_local_ca(data_dir: Path) -> None:
    material = prepare_tls(make_settings(data_dir))
    assert material.ca_path is not None
    (ca,) = load_chain(material.ca_path)
    key = serialization.load_pem_private_key((data_dir / "tls/ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    basic = ext(ca, x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca
    assert basic.value.path_length == 0
    usage = ext(ca, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    assert ext(ca, x509.SubjectKeyIdentifier).value.digest
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3600) < lifetime <= timedelta(days=3660)
    cn = ca.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "safeboard local CA buildbox"
    assert material.ca_fingerprint == format_fingerprint(
        ca.public_bytes(serialization.Encoding.DER)
    )


def test_server_certificate(data_dir: Path) -> None:
    settings = make_settings(
        data_dir, server={"host": "192.0.2.7"}, tls={"san": ["board.example.com", "10.1.2.3"]}
    )
    material = prepare_tls(settings)
    leaf, ca = load_chain(material.cert_path)
    assert material.ca_path is not None
    assert load_chain(material.ca_path) == [ca]
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(days=90)
    assert leaf.not_valid_after_utc - NOW > timedelta(days=89)
    basic = ext(leaf, x509.BasicConstraints)
    assert basic.critical
    assert not basic.value.ca
    usage = ext(leaf, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert list(ext(leaf, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = ext(leaf, x509.SubjectAlternativeName)
    assert not san.critical
    dns = set(san.value.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)}
    assert dns == {"localhost", "buildbox", "buildbox.example.org", "board.example.com"}
    assert ips == {"127.0.0.1", "::1", "192.0.2.7", "10.1.2.3"}
    assert set(material.names) == dns | ips
    aki = ext(leaf, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert ext(leaf, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        leaf.public_key()
    )
    # cryptography's RFC 5280 verifier is what sslyze's path validation uses.
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("localhost"))
    verifier.verify(leaf, [])
    key = serialization.load_pem_private_key(material.key_path.read_bytes(), None)
    assert key.public_key() == leaf.public_key()


def test_material_and_file_modes(data_dir: Path) -> None:
    material = prepare_tls(make_settings(data_dir))
    assert material.generated
    assert material.renewed
    leaf = load_chain(material.cert_path)[0]
    assert material.fingerprint == format_fingerprint(leaf.public_bytes(serialization.Encoding.DER))
    assert material.not_after == leaf.not_valid_after_utc
    assert material.not_after.tzinfo is not None
    tls_dir = data_dir / "tls"
    assert mode(tls_dir) == 0o700
    for name in ("ca.key", "server.key", "ca.pem", "server.pem"):
        assert mode(tls_dir / name) == 0o600, name


def test_wildcard_bind_names_the_machines_addresses(data_dir: Path) -> None:
    addresses = machine_addresses()
    assert addresses, "this machine has a non-loopback address (issue 11)"
    assert all(usable_address(address) == address for address in addresses)
    for host in ("0.0.0.0", "::"):
        material = prepare_tls(make_settings(data_dir, server={"host": host}))
        assert host not in material.names
        assert {"localhost", "127.0.0.1", "::1", "buildbox", *addresses} <= set(material.names)
    loopback_bind = prepare_tls(make_settings(data_dir, server={"host": "127.0.0.1"}))
    assert not set(addresses) & set(loopback_bind.names)


@pytest.mark.parametrize(
    ("text", "usable"),
    [
        ("192.0.2.2", "192.0.2.2"),
        ("10.1.2.3", "10.1.2.3"),
        ("fd00::2", "fd00::2"),
        ("2001:db8:0:0::7", "2001:db8::7"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("127.0.1.1", None),
        ("::1", None),
        ("fe80::1%eth0", None),
        ("169.254.3.4", None),
        ("0.0.0.0", None),
        ("224.0.0.1", None),
        ("not-an-address", None),
    ],
)
def test_which_addresses_a_certificate_may_name(text: str, usable: str | None) -> None:
    assert usable_address(text) == usable


def test_wildcard_leaf_is_reissued_when_the_addresses_change(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(data_dir, server={"host": "0.0.0.0"})
    monkeypatch.setattr(certificates, "machine_addresses", lambda: ["10.1.2.3"])
    first = prepare_tls(settings)
    assert "10.1.2.3" in first.names
    assert not prepare_tls(settings).renewed
    monkeypatch.setattr(certificates, "machine_addresses", lambda: ["10.1.2.4", "fd00::9"])
    second = prepare_tls(settings)
    assert (second.renewed, second.renewal, second.ca_status) == (
        True,
        "the names changed",
        "unchanged",
    )
    assert {"10.1.2.4", "fd00::9"} <= set(second.names)
    assert "10.1.2.3" not in second.names
    assert second.ca_fingerprint == first.ca_fingerprint


def test_material_says_why_the_leaf_and_the_ca_are_new(data_dir: Path) -> None:
    first = prepare_tls(make_settings(data_dir))
    assert (first.renewal, first.ca_status) == ("there was none", "new: first start")
    again = prepare_tls(make_settings(data_dir))
    assert (again.renewed, again.renewal, again.ca_status) == (False, None, "unchanged")
    later = prepare_tls(make_settings(data_dir), now=NOW + timedelta(days=61))
    assert (later.renewal, later.ca_status) == ("the stored one expires soon", "unchanged")
    for name in ("ca.pem", "ca.key"):
        (data_dir / "tls" / name).unlink()
    replaced = prepare_tls(make_settings(data_dir))
    assert replaced.ca_status == "new: the previous CA's files were missing"
    assert replaced.renewal == "the stored one is unreadable or not signed by the current CA"
    assert replaced.ca_fingerprint != first.ca_fingerprint


def test_unusable_machine_names_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "my_box!")
    monkeypatch.setattr(socket, "getfqdn", lambda *_: "my_box!")
    names = prepare_tls(make_settings(tmp_path / "data")).names
    assert names == ("localhost", "127.0.0.1", "::1")


def test_bad_san_entry_is_a_config_error(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"--tls-san 'not a name'"):
        prepare_tls(make_settings(data_dir, tls={"san": ["not a name"]}))


def test_second_start_reuses_everything(data_dir: Path) -> None:
    first = prepare_tls(make_settings(data_dir))
    pem = first.cert_path.read_bytes()
    second = prepare_tls(make_settings(data_dir), now=NOW + timedelta(days=59))
    assert not second.renewed
    assert (second.fingerprint, second.ca_fingerprint) == (first.fingerprint, first.ca_fingerprint)
    assert second.cert_path.read_bytes() == pem


def test_renewed_when_fewer_than_30_days_remain(data_dir: Path) -> None:
    first = prepare_tls(make_settings(data_dir))
    later = NOW + timedelta(days=61)
    second = prepare_tls(make_settings(data_dir), now=later)
    assert second.renewed
    assert second.fingerprint != first.fingerprint
    assert second.ca_fingerprint == first.ca_fingerprint
    assert second.not_after - later > timedelta(days=89)


def test_short_lived_leaf_on_disk_is_renewed(data_dir: Path) -> None:
    settings = make_settings(data_dir)
    first = prepare_tls(settings)
    tls_dir = data_dir / "tls"
    ca = load_chain(tls_dir / "ca.pem")[0]
    ca_key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    names = certificates._wanted_names(settings)
    leaf, key = certificates._issue_leaf(ca, ca_key, names, NOW, lifetime=timedelta(days=20))
    (tls_dir / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tls_dir / "server.key").write_bytes(certificates._key_pem(key))
    second = prepare_tls(settings)
    assert second.renewed
    assert second.ca_fingerprint == first.ca_fingerprint
    assert second.not_after - NOW > timedelta(days=89)


def test_leaf_never_lives_longer_than_90_days(data_dir: Path) -> None:
    ca, ca_key = certificates._new_ca(NOW)
    with pytest.raises(ValueError, match="90 days"):
        certificates._issue_leaf(ca, ca_key, [], NOW, lifetime=timedelta(days=91))


def test_renewed_when_names_change(data_dir: Path) -> None:
    first = prepare_tls(make_settings(data_dir))
    second = prepare_tls(make_settings(data_dir, tls={"san": ["board.example.com"]}))
    assert second.renewed
    assert "board.example.com" in second.names
    assert second.ca_fingerprint == first.ca_fingerprint
    third = prepare_tls(make_settings(data_dir, tls={"san": ["board.example.com"]}))
    assert not third.renewed


def test_leaf_names_the_host_of_public_url(data_dir: Path) -> None:
    """Teammates are told to use public_url: its host must verify without --tls-san."""
    server = {"public_url": "https://board.example.net:8443"}
    material = prepare_tls(make_settings(data_dir, server=server))
    assert "board.example.net" in material.names
    ip_server = {"public_url": "https://203.0.113.7:8443"}
    assert "203.0.113.7" in prepare_tls(make_settings(data_dir, server=ip_server)).names


def test_renewed_when_the_ca_changed(data_dir: Path) -> None:
    first = prepare_tls(make_settings(data_dir))
    (data_dir / "tls/ca.pem").unlink()
    second = prepare_tls(make_settings(data_dir))
    assert second.renewed
    assert second.ca_fingerprint != first.ca_fingerprint
    leaf, ca = load_chain(second.cert_path)
    leaf.verify_directly_issued_by(ca)


def test_refuses_a_ca_key_readable_by_others(data_dir: Path) -> None:
    prepare_tls(make_settings(data_dir))
    ca_key = data_dir / "tls/ca.key"
    ca_key.chmod(0o640)
    with pytest.raises(ConfigError) as info:
        prepare_tls(make_settings(data_dir))
    assert str(ca_key) in info.value.message
    assert f"chmod 600 {ca_key}" in info.value.message


def test_refuses_a_tls_directory_open_to_others(data_dir: Path) -> None:
    prepare_tls(make_settings(data_dir))
    (data_dir / "tls").chmod(0o755)
    with pytest.raises(ConfigError, match="chmod 700"):
        prepare_tls(make_settings(data_dir))


def test_write_failure_is_a_config_error(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(certificates, "write_private", disk_full)
    with pytest.raises(ConfigError, match="No space left on device"):
        prepare_tls(make_settings(data_dir))


# Given certificates ----------------------------------------------------------------------


def write_given(
    directory: Path, *, start: datetime = NOW, lifetime: timedelta = timedelta(days=60)
) -> tuple[Path, Path, x509.Certificate]:
    """A chain file (leaf then CA) and its key, made by an unrelated CA."""
    ca, ca_key = certificates._new_ca(start)
    names: list[x509.GeneralName] = [x509.DNSName("board.example.com")]
    names.append(x509.IPAddress(ipaddress.ip_address("192.0.2.9")))
    leaf, key = certificates._issue_leaf(ca, ca_key, names, start, lifetime)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "chain.pem", directory / "server.key"
    pem = serialization.Encoding.PEM
    cert_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(certificates._key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path, leaf


def given(data_dir: Path, cert: Path, key: Path) -> TlsMaterial:
    return prepare_tls(make_settings(data_dir, tls={"cert": cert, "key": key}))


def config_error(data_dir: Path, cert: Path, key: Path) -> str:
    with pytest.raises(ConfigError) as info:
        given(data_dir, cert, key)
    message = info.value.message
    assert "\n" not in message
    return message


def test_given_chain_is_served(data_dir: Path, tmp_path: Path) -> None:
    cert, key, leaf = write_given(tmp_path / "given")
    material = given(data_dir, cert, key)
    assert (material.cert_path, material.key_path) == (cert, key)
    assert material.ca_path is None
    assert material.ca_fingerprint is None
    assert not material.generated
    assert not material.renewed
    assert material.fingerprint == format_fingerprint(leaf.public_bytes(serialization.Encoding.DER))
    assert material.names == ("board.example.com", "192.0.2.9")
    assert not (data_dir / "tls").exists()


def test_given_key_must_match(data_dir: Path, tmp_path: Path) -> None:
    cert, _, _ = write_given(tmp_path / "a")
    _, other_key, _ = write_given(tmp_path / "b")
    message = config_error(data_dir, cert, other_key)
    assert f"{other_key} is not the key of the first certificate in {cert}" in message


def test_given_certificate_expired(data_dir: Path, tmp_path: Path) -> None:
    cert, key, _ = write_given(
        tmp_path, start=NOW - timedelta(days=30), lifetime=timedelta(days=10)
    )
    assert "expired on" in config_error(data_dir, cert, key)


def test_given_certificate_not_yet_valid(data_dir: Path, tmp_path: Path) -> None:
    cert, key, _ = write_given(tmp_path, start=NOW + timedelta(days=2))
    assert "is not valid before" in config_error(data_dir, cert, key)


def test_given_file_missing(data_dir: Path, tmp_path: Path) -> None:
    _, key, _ = write_given(tmp_path)
    message = config_error(data_dir, tmp_path / "nope.pem", key)
    assert message.startswith(f"cannot read {tmp_path / 'nope.pem'}")
    assert "--tls-cert" in message


def test_given_file_is_garbage(data_dir: Path, tmp_path: Path) -> None:
    cert, key, _ = write_given(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"\x00\x01 not a certificate")
    assert "holds no PEM certificate" in config_error(data_dir, garbage, key)
    assert "holds no usable PEM private key" in config_error(data_dir, cert, garbage)


def test_given_files_swapped(data_dir: Path, tmp_path: Path) -> None:
    cert, key, _ = write_given(tmp_path)
    assert "swapped" in config_error(data_dir, key, cert)


def test_given_key_encrypted(data_dir: Path, tmp_path: Path) -> None:
    cert, key_path, _ = write_given(tmp_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    assert "encrypted with a passphrase" in config_error(data_dir, cert, key_path)


# Fingerprints and `safeboard tls show` -----------------------------------------------------


def test_fingerprint_format() -> None:
    expected = hashlib.sha256(b"der").hexdigest().upper()
    fingerprint = format_fingerprint(b"der")
    assert fingerprint.startswith("SHA256:")
    parts = fingerprint.removeprefix("SHA256:").split(":")
    assert len(parts) == 32
    assert all(len(part) == 2 for part in parts)
    assert "".join(parts) == expected


def test_describe_before_anything_was_generated(data_dir: Path) -> None:
    text = describe_tls(make_settings(data_dir))
    assert "No certificate generated yet" in text
    assert not data_dir.exists()


def test_describe_generated(data_dir: Path) -> None:
    material = prepare_tls(make_settings(data_dir, tls={"san": ["board.example.com"]}))
    text = describe_tls(make_settings(data_dir, tls={"san": ["board.example.com"]}))
    assert material.fingerprint in text
    assert str(material.ca_fingerprint) in text
    assert str(material.cert_path) in text
    assert str(material.ca_path) in text
    assert "board.example.com" in text
    assert f"{material.not_after:%Y-%m-%d}" in text
    assert f"cp {material.ca_path} /usr/local/share/ca-certificates/safeboard.crt" in text
    assert "update-ca-certificates" in text
    assert "security add-trusted-cert" in text
    assert "Firefox" in text
    assert "Chrome" in text
    assert f"--ca-cert {material.ca_path}" in text
    assert "PRIVATE KEY" not in text


def test_describe_given(data_dir: Path, tmp_path: Path) -> None:
    cert, key, _ = write_given(tmp_path / "given")
    material = given(data_dir, cert, key)
    text = describe_tls(make_settings(data_dir, tls={"cert": cert, "key": key}))
    assert material.fingerprint in text
    assert "board.example.com" in text


def listening_socket(data_dir: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(data_dir / "server.sock"))
    sock.listen()
    return sock


def test_describe_the_running_server_not_the_settings_file(data_dir: Path) -> None:
    # `safeboard server --host 0.0.0.0` serves HTTPS; the settings file alone says TLS off.
    flags = make_settings(data_dir, server={"host": "0.0.0.0"}, tls={"san": ["b.example"]})
    material = prepare_tls(flags)
    discovery = {
        "url": "https://127.0.0.1:8443",
        "tls": {"fingerprint": material.fingerprint, "ca_cert": str(material.ca_path),
                "cert": str(material.cert_path)},
    }  # fmt: skip
    (data_dir / "discovery.json").write_text(json.dumps(discovery))
    file_only = make_settings(data_dir, tls={"enabled": False})
    assert running_server(data_dir) is None  # no server answers on its socket
    assert "TLS is off in this configuration" in describe_tls(file_only)
    with listening_socket(data_dir):
        running = running_server(data_dir)
        assert running == RunningServer(
            "https://127.0.0.1:8443", material.cert_path, material.ca_path
        )
    text = describe_tls(file_only, running=running)
    assert "TLS is off" not in text
    assert "The running server on https://127.0.0.1:8443 serves HTTPS" in text
    for shown in (
        material.fingerprint,
        str(material.ca_fingerprint),
        "b.example",
        *machine_addresses(),
    ):
        assert shown in text
    assert f"pins the CA: {material.ca_fingerprint}" in text
    plain = RunningServer("http://127.0.0.1:8080", None, None)
    assert "serves plain HTTP" in describe_tls(file_only, running=plain)


def test_describe_a_running_server_with_a_given_chain(data_dir: Path, tmp_path: Path) -> None:
    cert, _, leaf = write_given(tmp_path / "given")
    ca = load_chain(cert)[1]
    running = RunningServer("https://127.0.0.1:8443", cert, None)
    text = describe_tls(make_settings(data_dir), running=running)
    assert certificates.cert_fingerprint(leaf) in text
    assert f"pins the CA: {certificates.cert_fingerprint(ca)}" in text
    alone = tmp_path / "leaf.pem"
    alone.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    text = describe_tls(make_settings(data_dir), running=RunningServer(running.url, alone, None))
    assert f"pins the server certificate: {certificates.cert_fingerprint(leaf)}" in text


# What clients pin, for agents' join strings (issue 14) ------------------------------------


def test_the_anchor_a_join_string_pins_is_what_clients_pin(data_dir: Path, tmp_path: Path) -> None:
    """The generated CA; for a given chain its CA; for a lone leaf the leaf: the same
    choice as the clients' ``trust_anchor`` over the chain the server presents."""
    from safeboard.client import CertificateInfo, trust_anchor

    generated = prepare_tls(make_settings(data_dir))
    assert generated.ca_path is not None
    ca_der = load_chain(generated.ca_path)[0].public_bytes(serialization.Encoding.DER)
    assert certificates.trust_anchor_der(generated) == ca_der
    served = [CertificateInfo(c.public_bytes(serialization.Encoding.DER))
              for c in load_chain(generated.cert_path)]  # fmt: skip
    assert trust_anchor(served).der == ca_der

    cert, key, leaf = write_given(tmp_path / "given")
    material = given(tmp_path / "d2", cert, key)
    chain = load_chain(cert)
    assert certificates.trust_anchor_der(material) == chain[1].public_bytes(
        serialization.Encoding.DER
    )
    cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))  # the leaf alone
    material = given(tmp_path / "d3", cert, key)
    assert certificates.trust_anchor_der(material) == leaf.public_bytes(serialization.Encoding.DER)
