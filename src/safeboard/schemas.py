"""The base of every request and response model: strict, closed (S17), and the shared
vocabulary of bounds that keep values inside the columns that store them."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ERROR_RESPONSES",
    "ROW_ID_MAX",
    "ErrorBody",
    "ErrorDetail",
    "Model",
    "RowId",
    "StrictModel",
]

# Row ids (projects, users, audit entries) are INTEGER columns: 32 bits on PostgreSQL,
# which refuses a larger parameter where SQLite takes up to 64. Every id a client sends,
# in a body, path or query, is bounded to this (the text no database stores, NUL and lone
# surrogates, is refused for every JSON body in one place: safeboard.text).
ROW_ID_MAX = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=ROW_ID_MAX)]


class StrictModel(BaseModel):
    """Requests: unknown fields refused, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Model(BaseModel):
    """Responses."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Model):
    code: str
    message: str
    request_id: str


class ErrorBody(Model):
    """The one shape of every error response."""

    error: ErrorDetail


_ERROR_STATUSES = {
    308: "A renamed project's old name in the path (routes keyed by a project's name): the "
    "same route under its current name, in Location.",
    400: "Malformed request (or a credential in the URL).",
    401: "No valid credential.",
    403: "The credential may not do this (or a CSRF/origin check failed).",
    404: "No such resource, or not visible to you.",
    409: "Conflicts with the current state.",
    413: "Request body too large.",
    422: "The body or parameters do not match the schema.",
    429: "Too many attempts; see Retry-After.",
    503: "Cannot be served now; the error code says why (database_unavailable, "
    "database_busy, disk_full, busy, unavailable): retry after Retry-After.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}

# Documented on every operation: any of these can answer any route (every route reaches
# the database, so any may answer 503: api/errors.py).
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text}
    | ({"headers": _RETRY_AFTER} if status in (429, 503) else {})
    for status, text in _ERROR_STATUSES.items()
}
