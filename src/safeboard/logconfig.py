"""Logging for the server process: one format, every handler behind the redacting filter."""

from __future__ import annotations

from typing import Any

__all__ = ["log_config"]


def log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server and uvicorn's loggers."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "safeboard.redaction.RedactingFilter"}},
        "formatters": {
            "plain": {
                "()": "safeboard.redaction.RedactingFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            },
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            },
        },
        # Everything else (asyncio, alembic, psycopg, ...) goes through the same handler.
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {
            "safeboard": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            # safeboard writes its own access log (redacted); uvicorn's would log query strings.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }
