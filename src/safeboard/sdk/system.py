"""System metrics: a thread of its own samples the machine, the training process and its
GPUs every few seconds (sdk/probes.py) and hands each sample to the run's sender, as
MLflow, W&B and ClearML do. On by default; ``init(system_metrics=False)`` or
``SAFEBOARD_SYSTEM_METRICS=0`` turns it off, ``system_metrics_interval`` (or
``SAFEBOARD_SYSTEM_METRICS_INTERVAL``) sets the period (docs/sdk.md, "System metrics").

It never touches the training loop: it reads nothing the loop writes and puts its points
straight into the sender's packer (``Sender.add_points``), not into ``log()``'s queue (a
point with other keys there would cost ``log()``'s inline packing its fast path). Its
points go through the normal batched, spooled, exactly-once ingest under keys that start
with ``system/``; a sample's step is its number in the run (0, 1, 2, ...) and its time
the wall clock when it was read: the run page draws them apart from the training metrics.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from safeboard.errors import InvalidRequest
from safeboard.sdk.switching import responsive
from safeboard.vocabulary import SYSTEM_METRIC_PREFIX

if TYPE_CHECKING:
    from safeboard.sdk.probes import Probe

__all__ = [
    "DEFAULT_INTERVAL",
    "ENABLED_ENV",
    "INTERVAL_ENV",
    "MIN_INTERVAL",
    "SystemMetrics",
    "choose",
]

log = logging.getLogger("safeboard.sdk")

ENABLED_ENV = "SAFEBOARD_SYSTEM_METRICS"
INTERVAL_ENV = "SAFEBOARD_SYSTEM_METRICS_INTERVAL"
DEFAULT_INTERVAL = 10.0  # seconds, as MLflow (W&B: 15)
MIN_INTERVAL = 0.1
STOP_WAIT = 1.0  # finish() waits this long at most for a sample under way
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


class Sink(Protocol):
    def add_points(self, flat: list[object]) -> None: ...


def choose(enabled: bool | None, interval: float | None) -> float | None:
    """The sampling period in seconds, or None when system metrics are off: the
    arguments of ``init()`` first, then the environment, then the defaults. A value that
    is not one raises InvalidRequest (at ``init()``, not later in the thread)."""
    if enabled is None:
        said = os.environ.get(ENABLED_ENV, "").strip().lower()
        if said and said not in _ON + _OFF:
            raise InvalidRequest(f"{ENABLED_ENV}: 1 or 0 (true or false), not {said[:20]!r}")
        enabled = said not in _OFF
    if not enabled:
        return None
    if interval is None:
        said = os.environ.get(INTERVAL_ENV, "").strip()
        try:
            interval = float(said) if said else DEFAULT_INTERVAL
        except ValueError:
            problem = f"{INTERVAL_ENV}: a number of seconds, not {said[:20]!r}"
            raise InvalidRequest(problem) from None
    if isinstance(interval, bool) or not math.isfinite(interval) or interval < MIN_INTERVAL:
        raise InvalidRequest(f"system_metrics_interval: seconds, at least {MIN_INTERVAL}")
    return float(interval)


class SystemMetrics(threading.Thread):
    """Samples every ``interval`` seconds until :meth:`stop`: the first sample one
    interval after the start (the rates need two readings), none at the end."""

    def __init__(self, sink: Sink, interval: float, directory: Path | None = None) -> None:
        super().__init__(name="safeboard-system-metrics", daemon=True)
        self.sink = sink
        self.interval = interval
        self.directory = directory if directory is not None else Path.cwd()
        self.samples = 0  # the next sample's step
        self.cpu_seconds = 0.0  # this thread's CPU time in samples (bench/system_metrics.py)
        self._stopping = threading.Event()

    @classmethod
    def started(cls, sink: Sink, interval: float | None) -> SystemMetrics | None:
        """A running sampler, or None when ``interval`` is None (system metrics off)."""
        if interval is None:
            return None
        # Imported here, in init()'s thread, not by the sampler: an import holds the
        # interpreter lock for a millisecond at a time (reading and running the modules'
        # code), and the sampler's first one stopped the training loop that long. One that
        # fails is the sampler's to report (system metrics off, never a failed init()).
        with contextlib.suppress(Exception):
            importlib.import_module("safeboard.sdk.probes")
        sampler = cls(sink, interval)
        sampler.start()
        return sampler

    def stop(self) -> None:
        """Stop sampling; waits at most STOP_WAIT s for a sample under way."""
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(STOP_WAIT)

    def run(self) -> None:
        try:
            from safeboard.sdk.probes import Gpus, Probe  # noqa: PLC0415  (started() loaded it)

            with responsive():
                probe = Probe(self.directory, Gpus.open())
                probe.sample(time.monotonic())  # primes the counters
        except Exception as exc:  # noqa: BLE001  (no system metrics, never a failed run)
            log.debug("system metrics off: %s", exc)
            return
        try:
            while not self._stopping.wait(self.interval):
                self._sample(probe)
        finally:
            if probe.gpus is not None:
                probe.gpus.close()

    def _sample(self, probe: Probe) -> None:
        began = time.thread_time()
        try:
            with responsive():  # the loop waits for this thread at most SWITCH_SECONDS
                values = probe.sample(time.monotonic())
                wall = time.time()
                if values:
                    named = {SYSTEM_METRIC_PREFIX + key: value for key, value in values.items()}
                    self.sink.add_points([self.samples, wall, named])
                    self.samples += 1
        except Exception as exc:  # noqa: BLE001  (one sample lost, said in the debug log)
            log.debug("system metrics sample failed: %s", exc)
        self.cpu_seconds += time.thread_time() - began
