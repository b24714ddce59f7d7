"""The error tree's codes (issue 11): each cause has its own code, a status, a class under
the old one (``except Unauthenticated`` still catches it), and the client maps an error
body back to that class by its code, never by its message."""

from __future__ import annotations

import httpx
import pytest

import safeboard
from safeboard import errors
from safeboard.client.http import _error_from

NEW = [
    ("key_invalid", errors.InvalidApiKey, errors.Unauthenticated, 401),
    ("key_revoked", errors.ApiKeyRevoked, errors.Unauthenticated, 401),
    ("key_expired", errors.ApiKeyExpired, errors.Unauthenticated, 401),
    ("scope_insufficient", errors.InsufficientScope, errors.Forbidden, 403),
    ("role_insufficient", errors.InsufficientRole, errors.Forbidden, 403),
    ("key_project_bound", errors.KeyBoundToProject, errors.Forbidden, 403),
    ("project_not_found", errors.ProjectNotFound, errors.NotFound, 404),
    ("invalid_url", errors.InvalidUrl, errors.ConfigError, 400),
    ("wrong_scheme", errors.WrongScheme, errors.ConfigError, 502),
    ("busy", errors.WriteQueueFull, errors.ServiceUnavailable, 503),
    ("join_token_invalid", errors.JoinTokenInvalid, errors.Unauthenticated, 401),
    ("agent_invalid", errors.AgentCredentialInvalid, errors.Unauthenticated, 401),
    ("agent_revoked", errors.AgentRevoked, errors.Unauthenticated, 401),
]


@pytest.mark.parametrize(("code", "cls", "parent", "status"), NEW)
def test_each_cause_has_a_code_a_status_and_a_parent(
    code: str, cls: type[errors.SafeboardError], parent: type[Exception], status: int
) -> None:
    assert cls.code == code
    assert issubclass(cls, parent)
    assert errors.STATUS_BY_CODE[code] == status
    made = errors.error_for_code(code, "why and the fix")
    assert type(made) is cls
    assert made.message == "why and the fix"


@pytest.mark.parametrize(("code", "cls", "parent", "status"), NEW[:5])
def test_the_client_maps_an_error_body_by_its_code(
    code: str, cls: type[errors.SafeboardError], parent: type[Exception], status: int
) -> None:
    body = {"error": {"code": code, "message": "invalid or revoked API key", "request_id": "r"}}
    error = _error_from(httpx.Response(status, json=body))
    assert type(error) is cls  # by the code: the same message maps elsewhere with another code
    assert isinstance(error, parent)


def test_an_old_server_s_codes_still_map_to_the_old_classes() -> None:
    body = {"error": {"code": "unauthenticated", "message": "invalid or revoked API key"}}
    assert type(_error_from(httpx.Response(401, json=body))) is errors.Unauthenticated
    assert type(_error_from(httpx.Response(403, text="no"))) is errors.Forbidden


def test_the_public_names_are_the_tree_s_classes() -> None:
    assert safeboard.AuthenticationError is errors.Unauthenticated
    assert safeboard.PermissionDenied is errors.Forbidden
    assert safeboard.ServerUnavailable is errors.ServiceUnavailable
    assert safeboard.InvalidApiKey is errors.InvalidApiKey
    assert safeboard.WrongScheme is errors.WrongScheme
    for name in safeboard.__all__:
        assert getattr(safeboard, name) is not None
    with pytest.raises(AttributeError):
        _ = safeboard.NoSuchThing  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    ["https://host:8080/foo", "not a url", "https://user:pw@host", "ftp://host", "http://h:x"],
)
def test_a_malformed_server_address_is_invalid_url(url: str) -> None:
    from safeboard.client.config import server_origin

    with pytest.raises(errors.InvalidUrl, match=r"https?://"):
        server_origin(url)
