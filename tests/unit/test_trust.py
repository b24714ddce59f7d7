"""The client's trust store, credentials and HTTP client (S13, S8, S15), without a server:
handshakes run over a socket pair, memory BIOs or a listener on 127.0.0.1, requests
through a mock transport."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trustme

from safeboard import errors
from safeboard.client import (
    ApiClient,
    CertificateChanged,
    CertificateInfo,
    CredentialStore,
    PinnedContext,
    StoredKey,
    TrustStore,
    UntrustedCertificate,
    context_for,
    fetch_certificate,
    fetch_chain,
    format_fingerprint,
    parse_fingerprint,
    pinned_context,
    probe,
    read_discovery,
    resolve_server,
    server_origin,
)
from safeboard.client.certificate import trust_anchor
from safeboard.errors import ConfigError

URL = "https://127.0.0.1:8443"
Resolved = tuple[str, str | None, str]


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def leaf_der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def server_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


def handshake(client: ssl.SSLContext, leaf: trustme.LeafCert) -> bytes | None:
    """A TLS handshake over a socket pair; the client sends nothing and closes."""
    near, far = socket.socketpair()
    for end in (near, far):
        end.settimeout(5)

    def serve() -> None:
        with (
            contextlib.suppress(OSError),
            server_context(leaf).wrap_socket(far, server_side=True) as tls,
        ):
            tls.recv(1)
        far.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(near, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)
    finally:
        near.close()
        thread.join(5)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "safeboard.example.org")


def test_fingerprints_are_formatted_and_parsed_like_the_server_prints_them() -> None:
    digest = hashlib.sha256(b"cert").hexdigest().upper()
    canonical = format_fingerprint(b"cert")
    assert canonical == "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    for typed in (canonical, canonical.lower(), digest, f"sha256 Fingerprint={canonical[7:]}"):
        assert parse_fingerprint(f" {typed} ") == canonical
    for bad in ("", "SHA256:AB", "MD5:" + canonical[7:], canonical[:-1] + "G"):
        with pytest.raises(errors.BadRequest):
            parse_fingerprint(bad)


def test_server_origin_is_the_key_and_refuses_anything_but_an_address() -> None:
    assert server_origin("https://Example.ORG/") == "https://example.org:443"
    assert server_origin("https://[::1]:8443") == "https://[::1]:8443"
    assert server_origin("http://localhost") == "http://localhost:80"
    for bad in ("ftp://x", "https://u:p@x", "https://x/a", "https://x?k", "x:1", "https://x:0x"):
        with pytest.raises(ConfigError):
            server_origin(bad)


def test_a_pinned_leaf_is_the_only_anchor(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    old = ca.issue_cert("127.0.0.1", "a.example", not_after=datetime.now(UTC) - timedelta(days=1))
    lines = CertificateInfo(leaf_der(old)).describe()  # what a person sees before trusting
    assert lines[0] == f"fingerprint: {format_fingerprint(leaf_der(old))}"
    assert "a.example, 127.0.0.1" in lines[3]
    assert lines[4].endswith("(EXPIRED)")
    pem = leaf.cert_chain_pems[0].bytes().decode()
    context = pinned_context(URL, format_fingerprint(leaf_der(leaf)), anchor_pem=pem)
    assert (context.check_hostname, context.verify_mode) == (False, ssl.CERT_REQUIRED)
    assert handshake(context, leaf) == leaf_der(leaf)  # a CA-signed leaf works as the anchor
    sibling = ca.issue_cert("127.0.0.1", "safeboard.example.org")  # same CA, same names
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, sibling)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, trustme.CA().issue_cert("127.0.0.1"))


def test_the_fingerprint_is_compared_after_the_handshake(
    ca: trustme.CA, leaf: trustme.LeafCert, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    expected = format_fingerprint(leaf_der(leaf))
    context = pinned_context(URL, expected, ca_file=ca_file)
    assert context.check_hostname
    assert handshake(context, leaf) == leaf_der(leaf)
    other = ca.issue_cert("127.0.0.1")  # chains to the CA: only the fingerprint tells
    with pytest.raises(CertificateChanged) as caught:
        handshake(context, other)
    assert caught.value.expected == expected
    assert caught.value.presented == format_fingerprint(leaf_der(other))
    message = caught.value.message
    assert "nothing was sent" in message
    assert f"safeboard login {URL} --fingerprint {caught.value.presented}" in message

    # The same check on memory BIOs (what asyncio and anyio use).
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = context.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server = server_context(other).wrap_bio(s_in, s_out, server_side=True)
    with pytest.raises(CertificateChanged):  # noqa: PT012  (the handshake takes a few rounds)
        for _ in range(10):
            with contextlib.suppress(ssl.SSLWantReadError):
                client.do_handshake()
            s_in.write(c_out.read())
            with contextlib.suppress(ssl.SSLWantReadError):
                server.do_handshake()
            c_in.write(s_out.read())


def test_trust_store_files_are_private_and_checked(leaf: trustme.LeafCert, tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "config" / "trust")
    assert store.get(URL) is None
    cert = CertificateInfo(leaf_der(leaf))
    path = store.pin("https://127.0.0.1:8443/", cert)
    assert (_mode(path), _mode(path.parent), _mode(path.parent.parent)) == (0o600, 0o700, 0o700)
    assert store.get(URL) == cert
    assert isinstance(context_for(URL, store=store), PinnedContext)
    assert context_for("https://other:8443", store=store).check_hostname
    record = json.loads(path.read_text())
    record["fingerprint"] = format_fingerprint(b"something else")
    path.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="damaged"):
        store.get(URL)
    store.forget(URL)
    assert store.get(URL) is None
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    with pytest.raises(ConfigError, match="chmod 700"):
        TrustStore(tmp_path / "open" / "trust").pin(URL, cert)


def stored(url: str, token: str) -> StoredKey:
    return StoredKey(url, "alice", "abc", "laptop (safeboard login)", token)


def test_credentials_are_private_and_never_shown(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "config" / "credentials")
    assert store.latest() is None
    path = store.save(stored(URL, "sb_abc_secret"))
    store.save(stored("https://b.example:8443", "sb_b_secret"))
    assert _mode(path) == 0o600
    assert "sb_abc_secret" not in repr(store.get(URL))
    assert getattr(store.latest(), "api_key", None) == "sb_b_secret"  # the newest login
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        store.get(URL)
    path.chmod(0o600)
    assert store.delete(URL) is not None
    assert store.get(URL) is None


def write_discovery(data_dir: Path, ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    (data_dir / "tls").mkdir(parents=True)
    ca.cert_pem.write_to_path(str(data_dir / "tls" / "ca.pem"))
    tls = {
        "fingerprint": format_fingerprint(leaf_der(leaf)),
        "ca_cert": str(data_dir / "tls/ca.pem"),
    }
    path = data_dir / "discovery.json"
    path.write_text(json.dumps({"url": URL, "api_key": "sb_local_k", "tls": tls}))
    path.chmod(0o600)


def test_which_server_and_which_key(ca: trustme.CA, leaf: trustme.LeafCert, tmp_path: Path) -> None:
    data_dir, config = tmp_path / "data", tmp_path / "config"
    store, trust = CredentialStore(config / "credentials"), TrustStore(config / "trust")

    def resolve(url: str | None = None, key: str | None = None, **env: str) -> Resolved:
        access = resolve_server(url, key, environ=env, store=store, trust=trust, data_dir=data_dir)
        assert (access.api_key or "<none>") not in repr(access)
        return access.url, access.api_key, access.source

    with pytest.raises(ConfigError, match="safeboard login URL"):
        resolve()
    write_discovery(data_dir, ca, leaf)
    assert resolve() == (URL, "sb_local_k", "discovery")
    local = read_discovery(data_dir)
    assert local is not None
    assert isinstance(local.verify, PinnedContext)
    # The local server's CA is pinned: a leaf renewed by a restart still verifies.
    assert local.verify.expected_fingerprint == ca_info(ca).fingerprint
    assert (local.verify.pins_ca, local.verify.check_hostname) == (True, True)
    assert handshake(local.verify, ca.issue_cert("127.0.0.1")) is not None
    store.save(stored("https://b:1", "sb_b_k"))
    assert resolve() == ("https://b:1", "sb_b_k", "login")
    env = {"SAFEBOARD_URL": "https://c", "SAFEBOARD_API_KEY": "sb_c_k"}
    assert resolve(**env) == ("https://c:443", "sb_c_k", "environment")
    assert resolve("https://d:1", "sb_d_k", **env) == ("https://d:1", "sb_d_k", "arguments")
    assert resolve("https://b:1", **env) == ("https://b:1", "sb_b_k", "login")
    assert resolve("https://e:1") == ("https://e:1", None, "arguments")
    with pytest.raises(ConfigError, match="SAFEBOARD_URL"):
        resolve(SAFEBOARD_API_KEY="sb_x")
    (data_dir / "discovery.json").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_discovery(data_dir)


@pytest.fixture
def quiet_httpx() -> Iterator[None]:
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.NOTSET)
    yield
    logger.setLevel(level)


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "request_id": "r1"}}
    return httpx.Response(status, json=body, headers=headers)


def test_api_client_sends_the_key_as_bearer_and_maps_errors_back(quiet_httpx: None) -> None:
    seen: list[httpx.Request] = []
    answers = iter(
        [
            httpx.Response(200, json={"ok": True}),
            error(404, "not_found", "no such run"),
            error(401, "unauthenticated", "sign in"),
            error(429, "rate_limited", "slow down", **{"Retry-After": "7"}),
            httpx.Response(502, text="<html>bad gateway</html>"),
        ]
    )

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    with ApiClient(URL, "sb_abc_secret", transport=httpx.MockTransport(handle)) as client:
        assert "secret" not in repr(client)
        assert logging.getLogger("httpx").level == logging.WARNING
        assert client.get("/api/v1/runs", params={"limit": 1}).json() == {"ok": True}
        for expected in (errors.NotFound, errors.Unauthenticated):
            with pytest.raises(expected):
                client.delete("/api/v1/runs/1")
        with pytest.raises(errors.RateLimited) as limited:
            client.post("/api/v1/metrics", json={})
        assert limited.value.retry_after == 7
        with pytest.raises(errors.SafeboardError, match="answered 502"):
            client.get("/x")
    assert seen[0].headers["authorization"] == "Bearer sb_abc_secret"
    assert seen[0].headers["origin"] == URL

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with (
        ApiClient(URL, transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(errors.ServiceUnavailable) as caught,
    ):
        client.get("/healthz")
    said = f"no safeboard server answers at {URL} (connection refused)"
    assert caught.value.message.startswith(said)


def ca_info(ca: trustme.CA) -> CertificateInfo:
    return CertificateInfo.from_pem(ca.cert_pem.bytes().decode())


def test_the_ca_that_issued_the_leaf_is_what_gets_pinned(
    ca: trustme.CA, leaf: trustme.LeafCert
) -> None:
    served, issuer = CertificateInfo(leaf_der(leaf)), ca_info(ca)
    assert (issuer.is_ca, served.is_ca) == (True, False)
    assert issuer.issued(served)
    assert trust_anchor([served, issuer]) == issuer
    assert trust_anchor([served]) == served  # a lone (self-signed or given) leaf: pinned itself
    stranger = ca_info(trustme.CA())
    assert not stranger.issued(served)
    assert trust_anchor([served, stranger]) == served  # a CA that did not issue it: ignored
    intermediate = ca.create_child_ca()
    child_leaf = intermediate.issue_cert("127.0.0.1")
    chain = [CertificateInfo(leaf_der(child_leaf)), ca_info(intermediate), issuer]
    assert trust_anchor(chain) == issuer
    assert not any(line.startswith("names:") for line in issuer.describe())


def test_a_pinned_ca_verifies_renewed_leaves_and_checks_the_host(
    ca: trustme.CA, leaf: trustme.LeafCert
) -> None:
    issuer = ca_info(ca)
    context = pinned_context(URL, issuer.fingerprint, anchor_pem=issuer.pem, pins_ca=True)
    assert (context.check_hostname, context.pins_ca) == (True, True)
    assert handshake(context, leaf) == leaf_der(leaf)
    renewed = ca.issue_cert("127.0.0.1", "new-name.example")  # another key, other names
    assert handshake(context, renewed) == leaf_der(renewed)
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        handshake(context, ca.issue_cert("board.example"))  # does not name 127.0.0.1
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, trustme.CA().issue_cert("127.0.0.1"))  # another CA


def test_leaf_pins_of_earlier_versions_keep_working(
    ca: trustme.CA, leaf: trustme.LeafCert, tmp_path: Path
) -> None:
    store = TrustStore(tmp_path / "trust")
    path = store.pin(URL, CertificateInfo(leaf_der(leaf)))
    record = json.loads(path.read_text())
    assert (record["version"], record["kind"]) == (2, "server certificate")
    old = {k: record[k] for k in ("url", "fingerprint", "pinned_at", "certificate")}
    path.write_text(json.dumps({"version": 1, **old}))  # what earlier versions wrote
    context = context_for(URL, store=store)
    assert isinstance(context, PinnedContext)
    assert (context.pins_ca, context.check_hostname) == (False, False)
    assert handshake(context, leaf) == leaf_der(leaf)
    store.pin(URL, ca_info(ca))
    assert json.loads(path.read_text())["kind"] == "ca"
    context = context_for(URL, store=store)
    assert isinstance(context, PinnedContext)
    assert (context.pins_ca, context.check_hostname) == (True, True)
    assert context.expected_fingerprint == ca_info(ca).fingerprint
    assert handshake(context, ca.issue_cert("127.0.0.1")) is not None


@contextlib.contextmanager
def tls_listener(leaf: trustme.LeafCert, ca: trustme.CA, tmp_path: Path) -> Iterator[str]:
    """A TLS server on 127.0.0.1 presenting leaf + CA, for handshakes only; yields its URL."""
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems) + ca.cert_pem.bytes())
    key = tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), conn:
                conn.settimeout(5)
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_ca_pin_tells_a_new_ca_from_a_host_the_certificate_does_not_name(
    ca: trustme.CA, tmp_path: Path
) -> None:
    issuer = ca_info(ca)
    with tls_listener(ca.issue_cert("board.example"), ca, tmp_path) as url:
        chain = fetch_chain(url)
        assert [c.fingerprint for c in chain][1:] == [issuer.fingerprint]
        assert fetch_certificate(url) == issuer  # what login shows and pins
        context = pinned_context(url, issuer.fingerprint, anchor_pem=issuer.pem, pins_ca=True)
        with pytest.raises(UntrustedCertificate, match=r"add --tls-san 127\.0\.0\.1"):
            probe(url, context)
    other = trustme.CA()
    with tls_listener(other.issue_cert("127.0.0.1"), other, tmp_path) as url:
        context = pinned_context(url, issuer.fingerprint, anchor_pem=issuer.pem, pins_ca=True)
        with pytest.raises(CertificateChanged) as caught:
            probe(url, context)
        assert (caught.value.expected, caught.value.presented) == (
            issuer.fingerprint,
            ca_info(other).fingerprint,
        )
