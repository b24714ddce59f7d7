"""What the ``SummaryWriter`` drop-in turns its inputs into: numpy arrays from tensors
(duck-typed, torch is never imported), 8-bit HxWxC pixels from TensorBoard's image layouts
(``dataformats``), a grid from a batch, pixels from a matplotlib figure, boxes drawn with
PIL, histogram buckets, PR curves, WAV audio and GIF video.

Everything here is pure computation on numpy; PIL is imported only for boxes and video.
"""

from __future__ import annotations

import importlib
import io
import math
import wave
from typing import Any

import numpy as np

from safeboard.errors import InvalidRequest

__all__ = [
    "array_of",
    "boxes_drawn",
    "figure_pixels",
    "grid",
    "histogram",
    "image_hwc",
    "metadata_tsv",
    "npy_bytes",
    "npz_bytes",
    "pr_curve",
    "tensors_tsv",
    "video_gif",
    "wav_bytes",
]

GRID_COLUMNS = 8  # images per row of a batch, as TensorBoard's make_grid
DEFAULT_BINS = 64  # bins for bins="tensorflow" (TensorBoard's exponential buckets)


def array_of(value: Any) -> np.ndarray:
    """A numpy array of a numpy array, a list, a number, a PIL image or a tensor (anything
    with ``.detach().cpu().numpy()``, or ``.numpy()``), without importing its library."""
    detach = getattr(value, "detach", None)
    if callable(detach):
        value = detach().cpu().numpy()
    elif not isinstance(value, np.ndarray) and callable(getattr(value, "numpy", None)):
        value = value.numpy()
    return np.asarray(value)


def _uint8(array: np.ndarray) -> np.ndarray:
    """TensorBoard's scaling: uint8 as it is, floats in [0, 1] times 255 (clipped)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        scaled: np.ndarray = array.astype(np.uint8) * 255
        return scaled
    if array.dtype.kind == "f":
        clean = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return np.asarray(np.clip(clean, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.asarray(np.clip(array, 0, 255)).astype(np.uint8)


def _channels_last(array: np.ndarray) -> np.ndarray:
    """HxWx{1,3,4}: two channels get a third (black), more than four keep the first three."""
    channels = array.shape[2]
    if channels == 2:
        return np.concatenate([array, np.zeros_like(array[:, :, :1])], axis=2)
    if channels > 4:
        return array[:, :, :3]
    return array


def image_hwc(image: Any, dataformats: str = "CHW") -> np.ndarray:
    """8-bit HxWxC pixels of one image in ``dataformats`` (CHW, HWC, HW, or with an N: a
    grid). A PIL image is taken as it is."""
    if any(cls.__module__.startswith("PIL.") for cls in type(image).__mro__):
        return _uint8(np.asarray(image.convert("RGBA") if image.mode == "P" else image))
    array = array_of(image)
    layout = dataformats.upper()
    if len(layout) != array.ndim or sorted(layout) != sorted(set(layout)):
        raise InvalidRequest(f"an image of shape {array.shape} is not {dataformats}")
    if "N" in layout:
        array = np.transpose(array, [layout.index(c) for c in _with_channel(layout, "NHWC")])
        return grid(_uint8(array if "C" in layout else array[..., None]))
    array = np.transpose(array, [layout.index(c) for c in _with_channel(layout, "HWC")])
    if "C" not in layout:
        array = array[:, :, None]
    return _channels_last(_uint8(array))


def _with_channel(layout: str, target: str) -> str:
    return target if "C" in layout else target.replace("C", "")


def grid(batch: np.ndarray) -> np.ndarray:
    """NxHxWxC images in one HxWxC picture, :data:`GRID_COLUMNS` to a row."""
    count = int(batch.shape[0])
    if count == 0:
        raise InvalidRequest("a batch of images holds at least one image")
    height, width, channels = (int(n) for n in batch.shape[1:4])
    columns = min(count, GRID_COLUMNS)
    rows = math.ceil(count / columns)
    out = np.zeros((rows * height, columns * width, channels), dtype=batch.dtype)
    for index in range(count):
        row, column = divmod(index, columns)
        out[row * height : (row + 1) * height, column * width : (column + 1) * width] = batch[index]
    return _channels_last(out)


def figure_pixels(figure: Any) -> np.ndarray:
    """RGBA pixels of a matplotlib figure (drawn on its canvas), or a grid of a list."""
    if isinstance(figure, (list, tuple)):
        return grid(np.stack([figure_pixels(one) for one in figure]))
    canvas = getattr(figure, "canvas", None)
    if canvas is None or not hasattr(canvas, "buffer_rgba"):
        raise InvalidRequest(f"add_figure takes a matplotlib figure, not {type(figure).__name__}")
    canvas.draw()
    return np.array(canvas.buffer_rgba(), dtype=np.uint8)


def close_figure(figure: Any) -> None:
    """``plt.close(figure)``, as torch's writer does (a figure made without pyplot, where
    pyplot cannot load, is left as it is)."""
    try:
        pyplot: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return
    for one in figure if isinstance(figure, (list, tuple)) else [figure]:
        pyplot.close(one)


def boxes_drawn(
    pixels: np.ndarray, boxes: Any, labels: list[str] | None, rescale: float = 1
) -> np.ndarray:
    """The image with each box (x_min, y_min, x_max, y_max) outlined, and its label."""
    draw_module: Any = importlib.import_module("PIL.ImageDraw")
    image_module: Any = importlib.import_module("PIL.Image")
    image = image_module.fromarray(pixels[:, :, :3] if pixels.shape[2] >= 3 else pixels[:, :, 0])
    image = image.convert("RGB")
    if rescale != 1:
        image = image.resize((int(image.width * rescale), int(image.height * rescale)))
    canvas = draw_module.Draw(image)
    corners = array_of(boxes).astype(np.float64).reshape(-1, 4) * rescale
    for index, (x0, y0, x1, y1) in enumerate(corners.tolist()):
        canvas.rectangle([x0, y0, x1, y1], outline=(255, 0, 0), width=2)
        if labels is not None and index < len(labels):
            canvas.text((x0 + 3, y0 + 2), str(labels[index]), fill=(255, 0, 0))
    return np.asarray(image)


def histogram(values: Any, bins: Any = "tensorflow", max_bins: int | None = None) -> dict[str, Any]:
    """Bucket edges and counts of ``values`` (NaN and infinities left out) with their
    statistics: ``{"edges", "counts", "min", "max", "num", "sum", "sum_squares"}``."""
    flat = array_of(values).astype(np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    chosen: Any = bins
    if bins == "tensorflow" or bins is None:
        chosen = max_bins or DEFAULT_BINS
    elif isinstance(bins, str) and max_bins is None:
        chosen = bins
    elif max_bins is not None:
        chosen = max_bins
    if flat.size == 0:
        return {"edges": [0.0, 1.0], "counts": [0], "min": 0.0, "max": 0.0, "num": 0,
                "sum": 0.0, "sum_squares": 0.0}  # fmt: skip
    counts, edges = np.histogram(flat, bins=chosen)
    return _stats(flat, edges.tolist(), counts.tolist())


def raw_histogram(  # noqa: PLR0917  (add_histogram_raw's parameters, in its order)
    low: float, high: float, num: float, total: float, squares: float,
    limits: Any, counts: Any,
) -> dict[str, Any]:  # fmt: skip
    """``add_histogram_raw``'s buckets (right limits) as edges and counts. Edges rise
    strictly: limits past ``max`` (TensorBoard's last is often DBL_MAX) end at ``max``,
    and a bucket that would not be wider than zero joins its neighbour."""
    right = array_of(limits).astype(np.float64).ravel().tolist()
    numbers = array_of(counts).astype(np.float64).ravel().tolist()
    if len(right) != len(numbers) or not right:
        raise InvalidRequest("bucket_limits and bucket_counts have the same length, at least 1")
    edges, kept, carried = [float(low)], [], 0.0
    for limit, number in zip(right, numbers, strict=True):
        edge = min(limit, float(high)) if math.isfinite(limit) else float(high)
        if edge > edges[-1]:
            edges.append(edge)
            kept.append(number + carried)
            carried = 0.0
        elif kept:
            kept[-1] += number
        else:
            carried += number
    if not kept:  # every value at one point
        edges, kept = [float(low) - 0.5, float(low) + 0.5], [carried]
    stats = {"min": float(low), "max": float(high), "num": float(num), "sum": float(total),
             "sum_squares": float(squares)}  # fmt: skip
    return {"edges": edges, "counts": kept, **stats}


def _stats(flat: np.ndarray, edges: list[float], counts: list[int]) -> dict[str, Any]:
    return {"edges": edges, "counts": counts, "min": float(flat.min()),
            "max": float(flat.max()), "num": int(flat.size), "sum": float(flat.sum()),
            "sum_squares": float(np.dot(flat, flat))}  # fmt: skip


def pr_curve(labels: Any, predictions: Any, thresholds: int, weights: Any = None) -> dict[str, Any]:
    """Counts, precision and recall at ``thresholds`` evenly spaced thresholds in [0, 1]."""
    truth = array_of(labels).astype(bool).ravel()
    scores = array_of(predictions).astype(np.float64).ravel()
    if truth.size != scores.size:
        raise InvalidRequest("labels and predictions have the same number of values")
    weight = (
        np.ones_like(scores) if weights is None else array_of(weights).astype(np.float64).ravel()
    )
    cuts = np.linspace(0.0, 1.0, max(2, int(thresholds)))
    above = scores[None, :] >= cuts[:, None]
    tp = (above & truth).astype(np.float64) @ weight
    fp = (above & ~truth).astype(np.float64) @ weight
    fn = float(weight[truth].sum()) - tp
    tn = float(weight[~truth].sum()) - fp
    return curve_table(
        tp, fp, tn, fn, tp / np.maximum(tp + fp, 1e-7), tp / np.maximum(tp + fn, 1e-7)
    )


def curve_table(*columns: Any) -> dict[str, Any]:
    names = ("true_positives", "false_positives", "true_negatives", "false_negatives",
             "precision", "recall")  # fmt: skip
    table = {name: array_of(column).astype(np.float64).ravel().tolist()
             for name, column in zip(names, columns, strict=True)}  # fmt: skip
    table["thresholds"] = np.linspace(0.0, 1.0, len(table["precision"])).tolist()
    return table


def wav_bytes(sound: Any, sample_rate: int) -> bytes:
    """16-bit PCM WAV of samples in [-1, 1]: shape L, 1xL (mono) or CxL (C channels)."""
    samples = array_of(sound).astype(np.float64)
    if samples.ndim == 1:
        samples = samples[None, :]
    if samples.ndim != 2 or samples.shape[0] > 8:
        raise InvalidRequest(f"audio is L or CxL samples, not {samples.shape}")
    pcm = (np.clip(np.nan_to_num(samples), -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(int(pcm.shape[0]))
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(np.ascontiguousarray(pcm.T).tobytes())
    return buffer.getvalue()


def video_gif(video: Any, fps: float, dataformats: str = "NTCHW") -> bytes:
    """An animated GIF: each frame a grid of the batch's videos at that time (PIL)."""
    array = array_of(video)
    layout = dataformats.upper()
    if len(layout) != array.ndim or set(layout) != set("NTCHW"):
        raise InvalidRequest(f"a video of shape {array.shape} is not {dataformats}")
    ordered = np.transpose(array, [layout.index(c) for c in "TNHWC"])
    frames = [grid(_uint8(frame))[:, :, :3] for frame in ordered]
    frames = [frame[:, :, 0] if frame.shape[2] == 1 else frame for frame in frames]
    image_module: Any = importlib.import_module("PIL.Image")
    pictures = [image_module.fromarray(np.ascontiguousarray(frame)) for frame in frames]
    buffer = io.BytesIO()
    pictures[0].save(
        buffer, format="GIF", save_all=True, append_images=pictures[1:],
        duration=max(1, int(1000 / max(float(fps), 0.001))), loop=0,
    )  # fmt: skip
    return buffer.getvalue()


def tensors_tsv(mat: Any) -> bytes:
    """An embedding's N x D points, a row each (TensorBoard projector's tensors.tsv)."""
    vectors = array_of(mat).astype(np.float64)
    if vectors.ndim != 2:
        raise InvalidRequest(f"mat is N x D, not {vectors.shape}")
    return "".join("\t".join(repr(float(x)) for x in row) + "\n" for row in vectors).encode()


def metadata_tsv(metadata: Any, header: Any = None) -> bytes:
    """An embedding's labels, a row per point (a list or tuple: its columns), ``header``
    first when given (the projector's metadata.tsv)."""
    lines = [] if header is None else ["\t".join(map(str, header))]
    for item in metadata:
        is_row = isinstance(item, (list, tuple))
        lines.append("\t".join(map(str, item)) if is_row else str(item))
    return ("\n".join(lines) + "\n").encode()


def npy_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array_of(value))
    return buffer.getvalue()


def npz_bytes(parts: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    arrays = {name: array_of(v) for name, v in parts.items()}
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    return buffer.getvalue()
