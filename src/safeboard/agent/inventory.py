"""What this machine has: host name, CPUs, memory, and GPUs (index, UUID, model, memory).

GPUs come from NVML (``pynvml``, the optional ``gpu`` extra) when it loads, else from
``nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits``
when it is on PATH, else there are none. ``SAFEBOARD_AGENT_FAKE_GPUS`` (a JSON list of
``{index, uuid, model, memory_mib}``) replaces the detection: for tests only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any

from safeboard.errors import ConfigError

__all__ = ["FAKE_GPUS_ENV", "Gpu", "Machine", "detect", "detect_gpus", "parse_nvidia_smi"]

FAKE_GPUS_ENV = "SAFEBOARD_AGENT_FAKE_GPUS"
_SMI_TIMEOUT = 10.0


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    model: str
    memory_mib: int | None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "model": self.model,
                "memory_mib": self.memory_mib}  # fmt: skip


@dataclass(frozen=True)
class Machine:
    hostname: str
    cpus: int | None
    memory_mib: int | None
    gpus: tuple[Gpu, ...]
    labels: list[str] = field(default_factory=list)
    source: str = "none"  # where the GPUs came from: nvml, nvidia-smi, fake, none

    def hello(self, version: str) -> dict[str, Any]:
        """The body of ``POST /api/v1/agent/hello``."""
        return {
            "hostname": self.hostname,
            "version": version,
            "gpus": [gpu.to_json() for gpu in self.gpus],
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "labels": list(self.labels),
        }


def _memory_mib() -> int | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return int(pages * size // (1024 * 1024)) if pages > 0 and size > 0 else None


def _fake(text: str) -> tuple[Gpu, ...]:
    try:
        items = json.loads(text)
        return tuple(
            Gpu(int(g["index"]), str(g["uuid"]), str(g.get("model", "")), g.get("memory_mib"))
            for g in items
        )
    except (ValueError, TypeError, KeyError):
        raise ConfigError(
            f"{FAKE_GPUS_ENV} is not a JSON list of {{index, uuid, model, memory_mib}}"
        ) from None


def _nvml() -> tuple[Gpu, ...] | None:
    try:
        import pynvml  # type: ignore[import-not-found]  # noqa: PLC0415  (optional extra)
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001  (no driver: fall back to nvidia-smi)
        return None
    try:
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid, name = pynvml.nvmlDeviceGetUUID(handle), pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024)
            found.append(Gpu(index, _text(uuid), _text(name), int(memory)))
        return tuple(found)
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_nvidia_smi(output: str) -> tuple[Gpu, ...]:
    """Lines of ``index, uuid, name, memory.total`` (MiB), as nvidia-smi prints them."""
    found = []
    for line in output.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        memory = int(parts[3]) if parts[3].isdigit() else None
        found.append(Gpu(int(parts[0]), parts[1], parts[2], memory))
    return tuple(found)


def _nvidia_smi() -> tuple[Gpu, ...] | None:
    program = shutil.which("nvidia-smi")
    if program is None:
        return None
    query = "--query-gpu=index,uuid,name,memory.total"
    try:
        done = subprocess.run(  # noqa: S603  (a fixed argv, no shell)
            [program, query, "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=_SMI_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else None


def detect_gpus() -> tuple[tuple[Gpu, ...], str]:
    """The GPUs of this machine and where they were found."""
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        return _fake(fake), "fake"
    for source, probe in (("nvml", _nvml), ("nvidia-smi", _nvidia_smi)):
        gpus = probe()
        if gpus is not None:
            return gpus, source
    return (), "none"


def detect(labels: list[str] | None = None) -> Machine:
    gpus, source = detect_gpus()
    return Machine(
        hostname=socket.gethostname(),
        cpus=os.cpu_count(),
        memory_mib=_memory_mib(),
        gpus=gpus,
        labels=list(labels or []),
        source=source,
    )
