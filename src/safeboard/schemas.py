"""The base of every request and response model: strict, closed (S17)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ERROR_RESPONSES", "ErrorBody", "ErrorDetail", "Model", "StrictModel"]


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
    400: "Malformed request (or a credential in the URL).",
    401: "No valid credential.",
    403: "The credential may not do this (or a CSRF/origin check failed).",
    404: "No such resource, or not visible to you.",
    409: "Conflicts with the current state.",
    413: "Request body too large.",
    422: "The body or parameters do not match the schema.",
    429: "Too many attempts; see Retry-After.",
}

# Documented on every operation: any of these can answer any route.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _ERROR_STATUSES.items()
}
