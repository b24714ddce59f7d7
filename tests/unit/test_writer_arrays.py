"""What the SummaryWriter drop-in makes of its inputs (sdk/writer_arrays.py): TensorBoard's
image layouts and scaling, a batch as a grid, histogram buckets the histogram series
accepts (edges rising strictly), PR curves, WAV audio and GIF video."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
from PIL import Image

from safeboard.errors import InvalidRequest
from safeboard.sdk import writer_arrays as arrays


def test_image_layouts_become_height_width_channels() -> None:
    chw = np.zeros((3, 4, 5), dtype=np.float32)
    chw[0] = 1.0  # red, in [0, 1]: 255
    hwc = arrays.image_hwc(chw, "CHW")
    assert hwc.shape == (4, 5, 3)
    assert hwc.dtype == np.uint8
    assert hwc[0, 0].tolist() == [255, 0, 0]
    assert arrays.image_hwc(np.full((4, 5), 0.5), "HW").shape == (4, 5, 1)
    assert arrays.image_hwc(np.full((4, 5, 3), 300), "HWC").max() == 255  # clipped
    assert arrays.image_hwc(Image.new("RGB", (5, 4)), "CHW").shape == (4, 5, 3)
    with pytest.raises(InvalidRequest, match="is not CHW"):
        arrays.image_hwc(np.zeros((4, 5)), "CHW")


def test_a_batch_is_a_grid_eight_to_a_row() -> None:
    batch = np.stack([np.full((1, 2, 3), i / 10) for i in range(10)])  # NCHW, 10 images
    picture = arrays.image_hwc(batch, "NCHW")
    assert picture.shape == (4, 24, 1)  # 2 rows of 8 columns, 2x3 each
    assert picture[2, 3, 0] == round(0.9 * 255)  # the tenth image: row 2, column 2
    assert picture[2, 6:, 0].tolist() == [0] * 18  # the rest of the last row is black


def test_histograms_have_strictly_rising_edges() -> None:
    made = arrays.histogram(np.arange(100.0), "tensorflow")
    assert len(made["edges"]) == len(made["counts"]) + 1 == arrays.DEFAULT_BINS + 1
    assert sum(made["counts"]) == made["num"] == 100
    assert arrays.histogram([np.nan, np.inf])["counts"] == [0]
    raw = arrays.raw_histogram(0, 3, 10, 9, 15, [0, 2, 1.7e308, 1.7e308], [1, 2, 3, 4])
    assert raw["edges"] == [0.0, 2.0, 3.0]
    assert raw["counts"] == [3.0, 7.0]  # nothing lost
    point = arrays.raw_histogram(2, 2, 3, 6, 12, [2, 2], [1, 2])
    assert (point["edges"], point["counts"]) == ([1.5, 2.5], [3.0])


def test_a_pr_curve_counts_at_each_threshold() -> None:
    table = arrays.pr_curve([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1], thresholds=3)  # 0, .5, 1
    assert table["thresholds"] == [0.0, 0.5, 1.0]
    assert table["true_positives"] == [2.0, 1.0, 0.0]
    assert table["false_positives"] == [2.0, 1.0, 0.0]
    assert table["false_negatives"] == [0.0, 1.0, 2.0]
    assert table["recall"][1] == pytest.approx(0.5)


def test_audio_is_a_wav_and_video_a_gif() -> None:
    data = arrays.wav_bytes(np.sin(np.linspace(0, 10, 800))[None, :], 8000)
    with wave.open(io.BytesIO(data)) as sound:
        assert (sound.getnchannels(), sound.getframerate(), sound.getnframes()) == (1, 8000, 800)
    gif = Image.open(
        io.BytesIO(arrays.video_gif(np.random.default_rng(0).random((2, 3, 3, 4, 4)), 2))
    )
    assert (gif.format, gif.n_frames, gif.size) == ("GIF", 3, (8, 4))


def test_a_matplotlib_figure_is_drawn_to_pixels() -> None:
    figure_module = pytest.importorskip("matplotlib.figure")
    backend = pytest.importorskip("matplotlib.backends.backend_agg")
    figure = figure_module.Figure(figsize=(2, 1), dpi=50)
    backend.FigureCanvasAgg(figure)
    figure.add_subplot().plot([0, 1], [1, 0])
    assert arrays.figure_pixels(figure).shape == (50, 100, 4)
    assert arrays.figure_pixels([figure, figure]).shape == (50, 200, 4)
