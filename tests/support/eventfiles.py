"""Event files written the ways training scripts write them: TensorBoard's own writer
(``EventFileWriter``, with TF2-shaped summaries: tensors with plugin metadata, given on a
tag's first value only) and tensorboardX's ``SummaryWriter``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def tensorboard_tf2_run(logdir: Path, steps: int = 3) -> Path:
    """TF2-style scalars (float_val, then tensor_content), text, a histogram, an image
    and hparams, through TensorBoard's EventFileWriter. The run's directory."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.plugins.hparams import summary_v2 as hparams
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    def value(tag: str, plugin: str | None, tensor: Any) -> Any:
        metadata = None
        if plugin is not None:
            metadata = summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
            )
        return summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)]
        )

    writer = EventFileWriter(str(logdir))
    for step in range(steps):
        first = step == 0  # TF2 writes a tag's metadata with its first value only
        plugin = "scalars" if first else None
        scalar = tensor_pb2.TensorProto(dtype=1, float_val=[0.5 + step])
        summary = value("acc", plugin, scalar)
        writer.add_event(event_pb2.Event(wall_time=1.0 + step, step=step, summary=summary))
        packed = tensor_pb2.TensorProto(dtype=2, tensor_content=np.float64(step * 2.0).tobytes())
        writer.add_event(event_pb2.Event(step=step, summary=value("loss/double", plugin, packed)))
    text = tensor_pb2.TensorProto(dtype=7, string_val=[b"<script>alert(1)</script> **hi**"])
    writer.add_event(event_pb2.Event(step=1, summary=value("notes", "text", text)))
    shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=2), TensorShapeProto.Dim(size=3)])
    buckets = np.array([[0, 1, 3], [1, 2, 5]], dtype=np.float64).tobytes()
    histogram = tensor_pb2.TensorProto(dtype=2, tensor_shape=shape, tensor_content=buckets)
    writer.add_event(event_pb2.Event(step=2, summary=value("weights", "histograms", histogram)))
    image = tensor_pb2.TensorProto(dtype=7, string_val=[b"1", b"1", PNG_1X1])
    writer.add_event(event_pb2.Event(step=1, summary=value("sample", "images", image)))
    chosen = hparams.hparams_pb({"lr": 0.01, "act": "relu", "deep": True})
    writer.add_event(event_pb2.Event(step=0, summary=chosen))
    writer.close()
    return logdir


def tensorboardx_run(logdir: Path, steps: int = 5) -> Path:
    """tensorboardX's SummaryWriter: simple_value scalars, text, an image, a histogram,
    and hparams (which tensorboardX writes into a subdirectory: a run of its own)."""
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(logdir))
    for step in range(steps):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.add_text("note", "<img src=x onerror=alert(1)> *md*", 2)
    writer.add_image("digits", np.zeros((3, 4, 5), dtype=np.uint8), 3)
    writer.add_histogram("weights", np.arange(10.0), 4)
    writer.add_hparams({"lr": 0.1, "optimizer": "adam"}, {"hp/accuracy": 0.9}, name="hp")
    writer.close()
    return logdir


# The smallest PNG: one black pixel.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000185d114090000000049454e44ae426082"
)
