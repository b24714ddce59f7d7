"""Small TensorBoard event files, written with TensorBoard's own writer (no TensorFlow)."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["write_scalars"]


def write_scalars(run_dir: Path, tag: str = "train/loss", steps: int = 20) -> Path:
    """One event file of ``steps`` scalars under ``tag`` in ``run_dir``; its path."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    run_dir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(run_dir))
    for step in range(steps):
        value = summary_pb2.Summary.Value(tag=tag, simple_value=1.0 / (step + 1))
        summary = summary_pb2.Summary(value=[value])
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    writer.close()
    (found,) = run_dir.glob("events.out.tfevents.*")
    return found
