"""Browser sessions as tests hold them: the session cookie counts only together with the
session's binding secret (src/safeboard/auth/binding.py), which the dashboard's service
worker sends with every request. Test clients get it from the sign-in response here,
the way the worker does, so no test needs a weaker server.

The header and cookie names are spelled out here rather than imported: they are the
contract with browsers and clients, and a test should notice when they change.
"""

from __future__ import annotations

import httpx

__all__ = ["BINDING_HEADER", "bind", "session_cookie_name"]

BINDING_HEADER = "X-Safeboard-Binding"


def bind(client: httpx.Client | httpx.AsyncClient, signed_in: httpx.Response) -> str:
    """Send the binding of the session that ``signed_in`` (a sign-in response) opened with
    every later request of ``client``, whose cookie jar holds that session's cookie."""
    assert signed_in.status_code == 200, signed_in.text
    binding = str(signed_in.json()["binding"])
    client.headers[BINDING_HEADER] = binding
    return binding


def session_cookie_name(base_url: str) -> str:
    """The session cookie's name on the server at ``base_url``: the port is part of it, and
    under TLS it carries the ``__Host-`` prefix."""
    url = httpx.URL(base_url)
    secure = url.scheme == "https"
    port = url.port or (443 if secure else 80)
    return f"__Host-safeboard-{port}" if secure else f"safeboard-{port}"
