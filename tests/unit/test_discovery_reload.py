"""``ServerAccess.reloaded()`` (issue 11): a client whose key came from the local server's
discovery file picks up the key a restart wrote there; any other access never does."""

from __future__ import annotations

import json
from pathlib import Path

from safeboard.client.credentials import (
    CredentialStore,
    ServerAccess,
    read_discovery,
    resolve_server,
)
from safeboard.client.trust import TrustStore

URL = "http://127.0.0.1:8080"


def write_discovery(data_dir: Path, key: str | None, url: str = URL) -> None:
    data_dir.mkdir(mode=0o700, exist_ok=True)
    path = data_dir / "discovery.json"
    body: dict[str, object] = {"url": url, "socket": str(data_dir / "server.sock")}
    if key is not None:
        body["api_key"] = key
    path.write_text(json.dumps(body))
    path.chmod(0o600)


def resolve(tmp_path: Path, data_dir: Path, url: str | None = None) -> ServerAccess:
    return resolve_server(
        url,
        environ={},
        store=CredentialStore(tmp_path / "config" / "credentials"),
        trust=TrustStore(tmp_path / "config" / "trust"),
        data_dir=data_dir,
    )


def given_key(tmp_path: Path, data_dir: Path) -> ServerAccess:
    """An access whose key was given as an argument."""
    return resolve_server(
        URL,
        "sb_mine_k",
        environ={},
        store=CredentialStore(tmp_path / "config" / "credentials"),
        trust=TrustStore(tmp_path / "config" / "trust"),
        data_dir=data_dir,
    )


def test_a_discovery_key_is_reloaded_once_the_file_holds_another(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_discovery(data_dir, "sb_first_k")
    for access in (resolve(tmp_path, data_dir), resolve(tmp_path, data_dir, URL)):
        assert access.source == "discovery"
        assert access.reloaded() is None  # the same key: nothing new
        write_discovery(data_dir, "sb_second_k", url="http://127.0.0.1:9090")
        fresh = access.reloaded()
        assert fresh is not None
        assert (fresh.url, fresh.api_key, fresh.source) == (
            "http://127.0.0.1:9090",
            "sb_second_k",
            "discovery",
        )
        assert fresh.local_socket == data_dir / "server.sock"
        assert fresh.reloaded() is None
        assert "sb_second_k" not in repr(fresh)
        write_discovery(data_dir, "sb_first_k")


def test_nothing_is_reloaded_when_the_file_cannot_give_a_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_discovery(data_dir, "sb_first_k")
    access = read_discovery(data_dir)
    assert access is not None
    write_discovery(data_dir, None)  # a server whose admin is disabled writes no key
    assert access.reloaded() is None
    (data_dir / "discovery.json").write_text("{not json")
    assert access.reloaded() is None  # unreadable: no exception, nothing new
    (data_dir / "discovery.json").unlink()
    assert access.reloaded() is None


def test_keys_from_elsewhere_are_never_replaced_from_the_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_discovery(data_dir, "sb_first_k")
    given = given_key(tmp_path, data_dir)
    assert given.source == "arguments"
    environment = resolve_server(
        environ={"SAFEBOARD_URL": URL, "SAFEBOARD_API_KEY": "sb_env_k"},
        store=CredentialStore(tmp_path / "config" / "credentials"),
        trust=TrustStore(tmp_path / "config" / "trust"),
        data_dir=data_dir,
    )
    assert environment.source == "environment"
    write_discovery(data_dir, "sb_second_k")
    assert given.reloaded() is None
    assert environment.reloaded() is None


def test_a_renewing_client_asks_the_file_only_for_a_discovery_key(tmp_path: Path) -> None:
    """``client(renewing=True)`` (the CLI's): a discovery key is renewed from the file, each
    new key once; a key given any other way never is, and a plain client never asks."""
    data_dir = tmp_path / "data"
    write_discovery(data_dir, "sb_first_k")
    access = resolve(tmp_path, data_dir)
    with access.client() as plain:
        assert plain.renew_key is None
    with access.client(renewing=True) as api:
        assert api.renew_key is not None
        assert api.renew_key() is None  # the same key: nothing to renew
        write_discovery(data_dir, "sb_second_k")
        assert api.renew_key() == "sb_second_k"
        assert api.renew_key() is None  # given once; the file holds no newer one
    given = given_key(tmp_path, data_dir)
    with given.client(renewing=True) as api:
        assert api.renew_key is None
