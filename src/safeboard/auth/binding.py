"""Binding a session to safeboard's origin, port included (S6).

Cookies ignore ports: a browser sends safeboard's session cookie to every web service on
the same host name (another user's Jupyter or TensorBoard on port 8888, say), TLS or not,
and any of them can set a cookie of that name for safeboard (cookie tossing). So the
cookie alone signs nobody in.

At sign-in the server also makes a binding secret (256 bits, ``tokens.new_token``) and
returns it in the JSON body of that one response, never again; the session row keeps only
its HMAC (``tokens.binding_hash``). The sign-in page puts it in Cache Storage, which is
scoped to the origin (scheme, host *and* port), and a service worker of the origin
(``web/static/sw.js``, served at ``/sw.js``) adds it as :data:`BINDING_HEADER` to every
request safeboard's pages make: navigations, API calls, event streams, downloads. A
session cookie counts only with its own binding (``AuthService.session_principal``,
compared with ``hmac.compare_digest``); without it the request is not signed in (pages
redirect to the sign-in form, the API answers 401). A service on another port receives
the cookie but not the binding, and a cookie it tosses names a session whose binding the
victim's worker does not hold: the victim is signed out, never signed in as someone else.

The cookie's name carries the port as well (``safeboard-8080``, ``__Host-safeboard-8443``)
so that two safeboard servers on one host keep their sessions apart.
"""

from __future__ import annotations

__all__ = ["BINDING_HEADER", "cookie_name"]

BINDING_HEADER = "X-Safeboard-Binding"


def cookie_name(*, secure: bool, port: int) -> str:
    """``__Host-safeboard-<port>`` (Secure, no Domain, Path=/) under TLS; ``safeboard-<port>``
    on plain loopback HTTP, where a Secure cookie would never be sent back."""
    return f"__Host-safeboard-{port}" if secure else f"safeboard-{port}"
