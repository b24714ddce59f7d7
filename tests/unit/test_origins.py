"""One reading of a server's address (safeboard.hosts.parse_origin): the server's
``public_url`` setting and every client's server address accept and refuse the same texts."""

from __future__ import annotations

import pytest

from safeboard.client.config import server_origin
from safeboard.errors import ConfigError, InvalidUrl
from safeboard.settings_sections import public_origin

TEXTS = [
    "https://ml.example.com",
    "https://ML.example.com:8443/",
    "http://127.0.0.1:8080",
    "https://[::1]:8443",
    "ml.example.com",
    "ftp://ml.example.com",
    "https://ml.example.com/safeboard",
    "https://ml.example.com/?a=1",
    "https://ml.example.com#top",
    "https://bob:pw@ml.example.com",
    "https://",
    "https://ml.example.com:99999",
    "https://ml example.com",
    "https://ml.exa%6dple.com",
    "not a url",
]


@pytest.mark.parametrize("text", TEXTS)
def test_server_addresses_and_public_url_agree(text: str) -> None:
    outcomes = []
    for read, refusal in ((server_origin, InvalidUrl), (public_origin, ConfigError)):
        try:
            read(text)
            outcomes.append(None)
        except refusal as exc:
            outcomes.append(str(exc).split(" ", 2)[-1].split(";")[0].split(": write")[0])
    client, server = outcomes
    assert (client is None) == (server is None), (client, server)


def test_a_password_in_an_address_is_never_repeated() -> None:
    for read, refusal in ((server_origin, InvalidUrl), (public_origin, ConfigError)):
        with pytest.raises(refusal) as refused:
            read("https://bob:hunter2@ml.example.com")
        assert "hunter2" not in str(refused.value)
        assert "user or password" in str(refused.value)


def test_the_problem_is_named() -> None:
    with pytest.raises(InvalidUrl, match=r"has a path \(/foo\)"):
        server_origin("https://ml.example.com:8443/foo")
    with pytest.raises(InvalidUrl, match="has a query or fragment"):
        server_origin("https://ml.example.com:8443/?x=1")
    assert server_origin("https://ML.example.com") == "https://ml.example.com:443"
    assert public_origin("https://ML.example.com") == "https://ml.example.com"
