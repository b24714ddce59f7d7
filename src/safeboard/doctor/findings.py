"""What ``safeboard doctor`` reports: findings, each with its severity and its fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

__all__ = ["Finding", "Severity", "as_json"]


class Severity(IntEnum):
    OK = 0  # a check that passed (shown with --all)
    INFO = 1  # worth knowing; nothing to fix
    WARNING = 2  # weakens the installation: fix it
    ERROR = 3  # broken or exposed: fix it now

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    check: str  # a stable name, e.g. "tls.expiry"
    severity: Severity
    message: str
    fix: str = ""


def as_json(finding: Finding) -> dict[str, Any]:
    found = asdict(finding)
    found["severity"] = finding.severity.label
    return found
