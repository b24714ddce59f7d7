"""TensorBoard event files read without TensorFlow or TensorBoard: TFRecord framing with
checked CRC32C (:mod:`.records`), and the few Event and Summary fields safeboard imports
(:mod:`.events`)."""

from safeboard.eventfiles import accel
from safeboard.eventfiles.events import (
    Histogram,
    Hparams,
    Image,
    Scalar,
    Text,
    decode_event,
)
from safeboard.eventfiles.records import CorruptRecord, Record, RecordReader, masked_crc32c

__all__ = [
    "CorruptRecord", "Histogram", "Hparams", "Image", "Record", "RecordReader", "Scalar",
    "Text", "accel", "decode_event", "masked_crc32c",
]  # fmt: skip
