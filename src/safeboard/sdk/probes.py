"""What the system-metrics thread reads (sdk/system.py): the machine and the training
process through psutil, GPUs through NVML (``nvidia-ml-py``, the ``gpu`` extra).

Counters that only grow (CPU seconds, disk and network bytes) become rates between two
readings (:func:`rates`); levels (memory, disk usage, GPU state) are read as they are.
A reading that fails (a counter the kernel does not expose in a container, a GPU query
its driver does not support) leaves its keys out of that sample, silently: system metrics
never interrupt a run. Keys are listed in docs/sdk.md, "System metrics".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = ["Counters", "Gpus", "Probe", "rates"]

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Counters:
    """One reading of the counters that only grow; None where one cannot be read."""

    at: float  # monotonic seconds
    cpu_busy: float | None  # the machine's CPU seconds not idle, all cores together
    cpu_total: float | None  # the machine's CPU seconds, all cores together
    process_cpu: float | None  # the process's user and system CPU seconds
    disk_read: int | None  # bytes, every disk of the machine
    disk_write: int | None
    net_sent: int | None  # bytes, every interface of the machine
    net_received: int | None


def _delta(before: float | None, now: float | None) -> float | None:
    """How much a counter grew; None when unknown or when it went back (a counter that
    wrapped or was reset: that interval has no rate)."""
    if before is None or now is None or now < before:
        return None
    return now - before


def rates(before: Counters, now: Counters) -> dict[str, float]:
    """The rates over the interval between two readings (keys without the prefix)."""
    seconds = now.at - before.at
    if seconds <= 0:
        return {}
    out: dict[str, float] = {}
    total = _delta(before.cpu_total, now.cpu_total)
    if total and before.cpu_busy is not None and now.cpu_busy is not None:
        # The kernel's idle and iowait counters jitter: the busy time may read a hair
        # lower than before. That is an idle interval (as psutil's cpu_percent has it),
        # not a missing sample.
        busy = now.cpu_busy - before.cpu_busy
        out["cpu_percent"] = min(100.0, max(0.0, 100.0 * busy / total))
    process = _delta(before.process_cpu, now.process_cpu)
    if process is not None:  # of one core, as top shows it: 250 is two and a half cores
        out["process/cpu_percent"] = 100.0 * process / seconds
    for key, grew in (
        ("disk/read_mib_s", _delta(before.disk_read, now.disk_read)),
        ("disk/write_mib_s", _delta(before.disk_write, now.disk_write)),
        ("network/sent_mib_s", _delta(before.net_sent, now.net_sent)),
        ("network/received_mib_s", _delta(before.net_received, now.net_received)),
    ):
        if grew is not None:
            out[key] = grew / MIB / seconds
    return out


def _read(read: Callable[[], Any]) -> Any:
    """``read()``, or None when this machine cannot answer it."""
    try:
        return read()
    except (OSError, RuntimeError, ValueError, AttributeError, NotImplementedError, psutil.Error):
        return None


def _gpu_queries(nvml: Any, h: Any) -> list[tuple[str, Callable[[], float]]]:
    """One GPU's readings, each on its own (a GPU may support some and not others)."""
    return [
        ("utilization_percent", lambda: nvml.nvmlDeviceGetUtilizationRates(h).gpu),
        ("memory_used_mib", lambda: nvml.nvmlDeviceGetMemoryInfo(h).used / MIB),
        ("memory_total_mib", lambda: nvml.nvmlDeviceGetMemoryInfo(h).total / MIB),
        ("temperature_c", lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
        ("power_w", lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0),  # milliwatts
    ]


class Gpus:
    """Every GPU NVML sees, read one query at a time (a query a GPU does not support
    leaves that key out). :meth:`open` answers None without the module, a driver or GPUs."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles

    @classmethod
    def open(cls) -> Gpus | None:
        try:
            import pynvml  # type: ignore[import-not-found]  # noqa: PLC0415  (optional extra)
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except Exception:  # noqa: BLE001  (no driver, no library: no GPU metrics)
            return None
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:  # noqa: BLE001  (see above)
            handles = []
        if not handles:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles)

    def __len__(self) -> int:
        return len(self._handles)

    def sample(self) -> dict[str, float]:
        nvml = self._nvml
        out: dict[str, float] = {}
        for index, handle in enumerate(self._handles):
            for name, query in _gpu_queries(nvml, handle):
                try:
                    out[f"gpu{index}/{name}"] = float(query())
                except Exception:  # noqa: BLE001, S112  (NVMLError_NotSupported and kin)
                    continue
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()


class Probe:
    """Reads the machine, the process and its working directory's filesystem. The first
    :meth:`sample` primes the counters and has levels only; each later one adds the rates
    since the one before."""

    def __init__(self, directory: Path, gpus: Gpus | None = None) -> None:
        self.directory = directory
        self.gpus = gpus
        self._process = psutil.Process(os.getpid())
        self._last: Counters | None = None

    def counters(self, at: float) -> Counters:
        cpu = _read(psutil.cpu_times)
        idle = total = None
        if cpu is not None:  # Linux counts guest time in user time already
            idle = cpu.idle + getattr(cpu, "iowait", 0.0)
            total = sum(cpu) - getattr(cpu, "guest", 0.0) - getattr(cpu, "guest_nice", 0.0)
        own = _read(self._process.cpu_times)
        disk = _read(psutil.disk_io_counters)
        net = _read(psutil.net_io_counters)
        return Counters(
            at=at,
            cpu_busy=None if total is None or idle is None else total - idle,
            cpu_total=total,
            process_cpu=None if own is None else own.user + own.system,
            disk_read=None if disk is None else disk.read_bytes,
            disk_write=None if disk is None else disk.write_bytes,
            net_sent=None if net is None else net.bytes_sent,
            net_received=None if net is None else net.bytes_recv,
        )  # fmt: skip

    def levels(self) -> dict[str, float]:
        out: dict[str, float] = {}
        memory = _read(self._process.memory_info)
        if memory is not None:
            out["process/rss_mib"] = memory.rss / MIB
        threads = _read(self._process.num_threads)
        if threads is not None:
            out["process/threads"] = float(threads)
        machine = _read(psutil.virtual_memory)
        if machine is not None:
            out["memory/used_mib"] = (machine.total - machine.available) / MIB
            out["memory/available_mib"] = machine.available / MIB
            out["memory/percent"] = float(machine.percent)
        disk = _read(lambda: psutil.disk_usage(str(self.directory)))
        if disk is not None:
            out["disk/used_percent"] = float(disk.percent)
            out["disk/free_gib"] = disk.free / GIB
        return out

    def sample(self, at: float) -> dict[str, float]:
        """The keys (without the prefix) and values read now; ``at``: monotonic seconds."""
        now = self.counters(at)
        values = rates(self._last, now) if self._last is not None else {}
        self._last = now
        values.update(self.levels())
        if self.gpus is not None:
            values.update(self.gpus.sample())
        return values
