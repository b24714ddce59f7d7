"""The ``tensorboard`` section of the settings tree (docs/tensorboard.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TensorboardSettings"]


class TensorboardSettings(BaseModel):
    """TensorBoard served behind safeboard's TLS and login (needs ``safeboard[tensorboard]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True,
        description=(
            "Open TensorBoard's own listener when the extra is installed. Off: no second "
            "port, and `safeboard tensorboard` says so."
        ),
    )
    same_origin: bool = Field(
        False,
        description=(
            "Serve TensorBoard under /tb/ on safeboard's own origin (no second listener), "
            "for one-port deployments behind a reverse proxy. It gives up an isolation: "
            "TensorBoard's scripts (its CSP allows 'unsafe-eval') then share the origin of "
            "safeboard's pages and could act as the signed-in user (docs/security.md, S18)."
        ),
    )
    port: int = Field(
        0,
        ge=0,
        le=65535,
        description=(
            "Port of TensorBoard's own origin (a second listener of the server: same "
            "address, same scheme, HTTPS with the same certificate when the server has "
            "TLS). 0: a free port picked at each start, printed in the banner and in "
            "every link."
        ),
    )
    max_per_user: int = Field(
        3,
        ge=1,
        le=100,
        description="TensorBoard instances one user may have running; 429 beyond it.",
    )
    idle_minutes: float = Field(
        60.0,
        gt=0,
        le=7 * 24 * 60,
        description="An instance that serves no request for this long is stopped.",
    )
    max_body_bytes: int = Field(
        1 << 20,
        ge=1024,
        le=64 << 20,
        description="Largest request body forwarded to TensorBoard (its POSTs are small).",
    )
    upstream_timeout_seconds: float = Field(
        60.0,
        gt=0,
        le=600,
        description="How long the proxy waits for TensorBoard's answer before a 504.",
    )
    start_timeout_seconds: float = Field(
        60.0,
        gt=0,
        le=600,
        description="How long a new instance may take to listen before its start fails.",
    )
    cookie_minutes: int = Field(
        60,
        ge=1,
        le=24 * 60,
        description="Lifetime of the TensorBoard origin's cookie (bound to user and instance).",
    )
