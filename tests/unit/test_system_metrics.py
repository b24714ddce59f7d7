"""System metrics (sdk/system.py, sdk/probes.py): the rates between two readings, the
switches of init() and the environment, real psutil readings of this machine and process,
the NVML-absent path, and the sampler thread numbering its samples."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

from safeboard.errors import InvalidRequest
from safeboard.sdk.probes import MIB, Counters, Gpus, Probe, rates
from safeboard.sdk.system import (
    DEFAULT_INTERVAL,
    ENABLED_ENV,
    INTERVAL_ENV,
    SystemMetrics,
    choose,
)


def _counters(at: float, **values: float | None) -> Counters:
    fields = dict.fromkeys(
        ("cpu_busy", "cpu_total", "process_cpu", "disk_read", "disk_write", "net_sent",
         "net_received"), 0,
    )  # fmt: skip
    fields.update(values)
    return Counters(at=at, **fields)  # type: ignore[arg-type]


def test_rates_over_the_interval() -> None:
    before = _counters(100.0, cpu_busy=10.0, cpu_total=40.0, process_cpu=2.0,
                       disk_read=0, disk_write=10 * MIB, net_sent=MIB, net_received=0)  # fmt: skip
    now = _counters(102.0, cpu_busy=13.0, cpu_total=48.0, process_cpu=5.0,
                    disk_read=4 * MIB, disk_write=10 * MIB, net_sent=5 * MIB,
                    net_received=MIB)  # fmt: skip
    assert rates(before, now) == pytest.approx({
        "cpu_percent": 37.5,  # 3 busy of 8 CPU seconds
        "process/cpu_percent": 150.0,  # 3 CPU seconds in 2 s: one and a half cores
        "disk/read_mib_s": 2.0,
        "disk/write_mib_s": 0.0,
        "network/sent_mib_s": 2.0,
        "network/received_mib_s": 0.5,
    })  # fmt: skip


def test_a_counter_that_went_back_or_is_unknown_has_no_rate() -> None:
    before = _counters(0.0, disk_read=5 * MIB, net_sent=None, cpu_total=10.0, cpu_busy=1.0)
    now = _counters(1.0, disk_read=MIB, net_sent=3, cpu_total=10.0, cpu_busy=1.0)
    got = rates(before, now)
    assert "disk/read_mib_s" not in got  # reset (a counter wrapped, a disk went away)
    assert "network/sent_mib_s" not in got  # not readable before
    assert "cpu_percent" not in got  # no CPU time passed: no share of it
    assert got["disk/write_mib_s"] == 0.0
    assert rates(now, now) == {}  # no time between the readings


def test_busy_time_that_reads_a_hair_lower_is_an_idle_interval() -> None:
    """The kernel's idle/iowait counters jitter, so the busy time (total less idle) can
    read lower than before: that interval was idle, and the sample keeps its CPU share
    (the sampler's samples once lacked cpu_percent there)."""
    before = _counters(0.0, cpu_total=100.0, cpu_busy=50.0)
    now = _counters(0.1, cpu_total=100.2, cpu_busy=49.99)
    assert rates(before, now)["cpu_percent"] == 0.0


def test_choose_defaults_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENABLED_ENV, raising=False)
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert choose(None, None) == DEFAULT_INTERVAL  # on by default
    assert choose(False, None) is None
    assert choose(None, 2) == 2.0
    monkeypatch.setenv(ENABLED_ENV, "0")
    assert choose(None, None) is None
    assert choose(True, None) == DEFAULT_INTERVAL  # the argument wins
    monkeypatch.setenv(ENABLED_ENV, "on")
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert choose(None, None) == 2.5
    assert choose(None, 30) == 30.0


@pytest.mark.parametrize(
    ("env", "interval"),
    [({ENABLED_ENV: "maybe"}, None), ({INTERVAL_ENV: "fast"}, None), ({}, 0.0),
     ({}, float("nan")), ({}, -1.0), ({}, True)],
)  # fmt: skip
def test_choose_refuses_what_is_not_a_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], interval: float | None
) -> None:
    monkeypatch.delenv(ENABLED_ENV, raising=False)
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidRequest):
        choose(None, interval)


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_probe_reads_this_machine_and_process(tmp_path: Path) -> None:
    probe = Probe(tmp_path)
    first = probe.sample(time.monotonic())
    assert not any(k.endswith(("_s", "cpu_percent")) for k in first)  # no rate yet
    assert first["process/rss_mib"] > 1
    assert first["process/threads"] >= 1
    assert first["memory/used_mib"] > 0
    assert first["memory/available_mib"] > 0
    assert 0 <= first["memory/percent"] <= 100
    assert 0 <= first["disk/used_percent"] <= 100
    assert first["disk/free_gib"] > 0
    cpu, wall = time.process_time(), time.monotonic()
    _spin(0.3)  # this process works: its CPU share is seen (however loaded the machine)
    second = probe.sample(time.monotonic())
    share = 100 * (time.process_time() - cpu) / (time.monotonic() - wall)
    assert 0 <= second["cpu_percent"] <= 100
    assert 0.5 * share < second["process/cpu_percent"] < 2 * share + 50
    for key in ("disk/read_mib_s", "disk/write_mib_s", "network/sent_mib_s",
                "network/received_mib_s"):  # fmt: skip
        assert second.get(key, 0.0) >= 0.0
    assert not any(k.startswith("gpu") for k in second)  # no GPU here


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is not None, reason="NVML is installed")
def test_without_nvml_there_are_no_gpus_and_no_error() -> None:
    assert Gpus.open() is None


class Collected:
    """Where the sampler puts its points (the sender's add_points in a run)."""

    def __init__(self) -> None:
        self.flat: list[object] = []
        self.arrived = threading.Event()

    def add_points(self, flat: list[object]) -> None:
        self.flat.extend(flat)
        self.arrived.set()


def test_the_sampler_numbers_its_samples_and_stops(tmp_path: Path) -> None:
    sink = Collected()
    sampler = SystemMetrics(sink, 0.1, tmp_path)
    sampler.start()
    deadline = time.monotonic() + 30
    while len(sink.flat) < 9 and time.monotonic() < deadline:
        sink.arrived.wait(0.5)
    sampler.stop()
    assert not sampler.is_alive()
    steps, times, values = sink.flat[0::3], sink.flat[1::3], sink.flat[2::3]
    assert steps[:3] == [0, 1, 2]
    assert all(isinstance(t, float) and abs(t - time.time()) < 60 for t in times)
    for sample in values:
        assert isinstance(sample, dict)
        assert all(key.startswith("system/") for key in sample)
        assert "system/cpu_percent" in sample
        assert "system/process/rss_mib" in sample
    count = len(sink.flat)
    time.sleep(0.3)
    assert len(sink.flat) == count  # stopped: no more samples


def test_off_means_no_thread() -> None:
    assert SystemMetrics.started(Collected(), None) is None
