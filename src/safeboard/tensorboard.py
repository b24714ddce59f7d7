"""``safeboard.tensorboard.SummaryWriter``: a drop-in for
``torch.utils.tensorboard.SummaryWriter`` and ``tensorboardX.SummaryWriter`` that logs to
safeboard (no torch needed).

Switching is an import change::

    # from torch.utils.tensorboard import SummaryWriter
    from safeboard.tensorboard import SummaryWriter

    writer = SummaryWriter(comment="lr0.1")          # project from log_dir or "tensorboard"
    writer.add_scalar("loss/train", loss, step)
    writer.add_histogram("weights", layer.weight, step)
    writer.close()

Every public method of tensorboardX's writer takes the same parameters
(tests/unit/test_writer_signatures.py); torch's extra parameters are keyword-only here.
Inputs are numbers, numpy arrays, lists, PIL images, matplotlib figures or tensors (read
with ``.detach().cpu().numpy()``). A call the writer cannot store says so once on stderr
and returns: no ``add_*`` call raises into the training loop. What each stores:
docs/sdk.md#tensorboard-users.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from safeboard.documents import document_problem
from safeboard.sdk import writer_arrays as arrays
from safeboard.sdk.run import Run, init
from safeboard.sdk.writer_media import WriterMedia
from safeboard.vocabulary import CHARTS_KEY

__all__ = ["SummaryWriter"]

_COMET_OFF = MappingProxyType({"disabled": True})  # tensorboardX's default, never used
_Method = TypeVar("_Method", bound=Callable[..., Any])


def _number(value: Any) -> float:
    """Plain numbers, numpy scalars and 0-d tensors (anything with .item())."""
    item = getattr(value, "item", None)
    return float(item() if callable(item) else value)


def _guarded(method: _Method) -> _Method:
    """A write: after close() it warns once and stores nothing; a failure to store is said
    once per method on stderr, never raised into the training loop."""
    name = method.__name__

    @functools.wraps(method)
    def write(self: SummaryWriter, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            if not self._warned_closed:
                self._warned_closed = True
                warnings.warn(
                    f"SummaryWriter.{name} after close(): not stored (and no later write "
                    "is; this is said once)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001  (never break the training loop)
            self._media.notice_once(name, f"SummaryWriter.{name}: not stored: {exc}")
            return None

    return write  # type: ignore[return-value]


def _default_log_dir(comment: str) -> str:
    """torch's default: runs/<Mon><DD>_<HH-MM-SS>_<host><comment>."""
    stamp = datetime.now().strftime("%b%d_%H-%M-%S")  # noqa: DTZ005  (torch's local time)
    return str(Path("runs") / f"{stamp}_{socket.gethostname()}{comment}")


class SummaryWriter:
    """A run of safeboard behind TensorBoard's writer API (``writer.run`` is the run)."""

    def __init__(
        self,
        logdir: str | None = None,
        comment: str | None = "",
        purge_step: int | None = None,
        max_queue: int | None = 10,
        flush_secs: int | None = 120,
        filename_suffix: str | None = "",
        write_to_disk: bool | None = True,
        log_dir: str | None = None,
        comet_config: Mapping[str, Any] | None = _COMET_OFF,
        *,
        project: str | None = None,
        run: Run | None = None,
        **kwargs: Any,
    ) -> None:
        """``logdir`` (or torch's ``log_dir``) names the run, with ``comment`` appended;
        the directory is created as torch does (a script may save files there), but
        nothing is written to it. The project is ``project`` or ``tensorboard``; ``run``
        logs into a run already started (``close()`` then leaves it running)."""
        del purge_step, max_queue, flush_secs, filename_suffix, comet_config, kwargs
        given = logdir or log_dir
        self.log_dir = str(given) if given else _default_log_dir(comment or "")
        self.logdir = self.log_dir  # tensorboardX's name for it
        if write_to_disk:
            Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        name = Path(given).name if given else None
        if given and comment:
            name = f"{name}{comment}"
        self.run = run or init(project or "tensorboard", name=name or Path(self.log_dir).name)
        self._own = run is None
        self._media = WriterMedia(self.run)
        self._closed = False
        self._warned_closed = False
        self._hparams: list[dict[str, Any]] = []
        self._layout: dict[str, Any] = {}
        self._charts: dict[str, dict[str, None]] = {}  # add_scalars' groups, keys in order
        self._default_step: int | None = None

    def get_logdir(self) -> str:
        """The directory named at creation (torch's ``get_logdir()``)."""
        return self.log_dir

    def _step(self, global_step: int | None) -> int | None:
        return self._default_step if global_step is None else int(global_step)

    @contextlib.contextmanager
    def use_metadata(
        self, *, global_step: int | None = None, walltime: float | None = None
    ) -> Iterator[SummaryWriter]:
        """``add_*`` calls inside without a ``global_step`` use this one."""
        del walltime
        before, self._default_step = self._default_step, global_step
        try:
            yield self
        finally:
            self._default_step = before

    # Scalars: metric points (walltime is not kept: the SDK stamps each point's time).

    @_guarded
    def add_scalar(
        self, tag: str, scalar_value: Any, global_step: int | None = None,
        walltime: float | None = None, display_name: str | None = "",
        summary_description: str | None = "", *, new_style: bool = False,
        double_precision: bool = False,
    ) -> None:  # fmt: skip
        if global_step is None:
            global_step = self._default_step
        self.run.log({tag: _number(scalar_value)}, step=global_step)

    @_guarded
    def add_scalars(
        self, main_tag: str, tag_scalar_dict: Mapping[str, Any], global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:  # fmt: skip
        """Metrics ``<main_tag>/<tag>``, drawn in one chart per ``main_tag``: the group
        is named in the run's config (``_charts``, web/chart_groups.py) when a tag is new."""
        values = {f"{main_tag}/{tag}": _number(v) for tag, v in tag_scalar_dict.items()}
        self.run.log(values, step=self._step(global_step))
        known = self._charts.get(main_tag)
        if known is None or not known.keys() >= values.keys():
            self._charts[main_tag] = {**(known or {}), **dict.fromkeys(values)}
            groups = {title: list(keys) for title, keys in self._charts.items()}
            if document_problem({**self.run.config, CHARTS_KEY: groups}) is None:
                self.run.log_params({CHARTS_KEY: groups})

    def export_scalars_to_json(self, path: str) -> None:
        """The scalars are on the server, not kept here: writes what the run's page is."""
        self._media.notice_once(
            "export", "export_scalars_to_json: the scalars are on the server (the run's "
            f"page, or `safeboard runs export {self.run.id}`); {path} names the run",
        )  # fmt: skip
        Path(path).write_text(json.dumps({"run": self.run.id, "project": self.run.project}))

    # Histograms: the run's histogram series (writer_media.py).

    @_guarded
    def add_histogram(
        self, tag: str, values: Any, global_step: int | None = None,
        bins: str | None = "tensorflow", walltime: float | None = None, max_bins: Any = None,
    ) -> None:  # fmt: skip
        self._media.histogram(
            tag, arrays.histogram(values, bins, max_bins), self._step(global_step)
        )

    @_guarded
    def add_histogram_raw(
        self, tag: str, min: float, max: float, num: float, sum: float, sum_squares: float,
        bucket_limits: Any, bucket_counts: Any, global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:  # fmt: skip
        buckets = arrays.raw_histogram(
            min, max, num, sum, sum_squares, bucket_limits, bucket_counts
        )
        self._media.histogram(tag, buckets, self._step(global_step))

    # Images: the run's image series, or image artifacts <tag>/<step>.png.

    @_guarded
    def add_image(
        self, tag: str, img_tensor: Any, global_step: int | None = None,
        walltime: float | None = None, dataformats: str | None = "CHW",
    ) -> None:  # fmt: skip
        pixels = arrays.image_hwc(img_tensor, dataformats or "CHW")
        self._media.image(tag, pixels, self._step(global_step))

    @_guarded
    def add_images(
        self, tag: str, img_tensor: Any, global_step: int | None = None,
        walltime: float | None = None, dataformats: str | None = "NCHW",
    ) -> None:  # fmt: skip
        """A batch of images as one grid, eight to a row (as TensorBoard shows them)."""
        pixels = arrays.image_hwc(img_tensor, dataformats or "NCHW")
        self._media.image(tag, pixels, self._step(global_step))

    @_guarded
    def add_image_with_boxes(
        self, tag: str, img_tensor: Any, box_tensor: Any, global_step: int | None = None,
        walltime: float | None = None, dataformats: str | None = "CHW",
        labels: list[str] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        """The image with its boxes (x_min, y_min, x_max, y_max) drawn in, with PIL."""
        pixels = arrays.image_hwc(img_tensor, dataformats or "CHW")
        drawn = arrays.boxes_drawn(pixels, box_tensor, labels, kwargs.get("rescale", 1))
        self._media.image(tag, drawn, self._step(global_step))

    @_guarded
    def add_figure(
        self, tag: str, figure: Any, global_step: int | None = None, close: bool | None = True,
        walltime: float | None = None,
    ) -> None:  # fmt: skip
        """A matplotlib figure (or a list of them, as a grid) drawn to pixels."""
        pixels = arrays.figure_pixels(figure)
        if close:
            arrays.close_figure(figure)
        self._media.image(tag, pixels, self._step(global_step))

    @_guarded
    def add_video(
        self, tag: str, vid_tensor: Any, global_step: int | None = None, fps: float | None = 4,
        walltime: float | None = None, dataformats: str | None = "NTCHW",
    ) -> None:  # fmt: skip
        """An animated GIF artifact ``videos/<tag>/<step>.gif`` (needs PIL), else the
        frames as a numpy file."""
        step = self._step(global_step)
        try:
            data = arrays.video_gif(vid_tensor, fps or 4, dataformats or "NTCHW")
        except ImportError:
            frames = arrays.npy_bytes(vid_tensor)
            self._file(f"videos/{tag}/{_label(step)}.npy", frames, step, "add_video",
                       "videos are kept as numpy files (install Pillow for GIFs)")  # fmt: skip
            return
        self._media.file(f"videos/{tag}/{_label(step)}.gif", data, "image", step)

    @_guarded
    def add_audio(
        self, tag: str, snd_tensor: Any, global_step: int | None = None,
        sample_rate: int | None = 44100, walltime: float | None = None,
    ) -> None:  # fmt: skip
        """A WAV artifact ``audio/<tag>/<step>.wav`` (16-bit, samples in [-1, 1])."""
        step = self._step(global_step)
        data = arrays.wav_bytes(snd_tensor, sample_rate or 44100)
        self._media.file(f"audio/{tag}/{_label(step)}.wav", data, "file", step)

    # Text: the run's text series, or its notes.

    @_guarded
    def add_text(
        self, tag: str, text_string: str, global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:  # fmt: skip
        self._media.text(tag, str(text_string), self._step(global_step))

    # Hyperparameters: each call its own record, in the run's config under "hparams".

    @_guarded
    def add_hparams(
        self, hparam_dict: Mapping[str, Any], metric_dict: Mapping[str, Any],
        name: str | None = None, global_step: int | None = None, *,
        hparam_domain_discrete: Mapping[str, list[Any]] | None = None,
        run_name: str | None = None,
    ) -> None:  # fmt: skip
        """A record ``{"name", "hparams", "metrics"}`` appended to the config's
        ``hparams`` list; the metrics are also logged, at ``global_step`` or at the
        record's index (so a second call adds points, never replaces the first's)."""
        del hparam_domain_discrete
        if isinstance(name, Mapping):  # torch's third parameter: hparam_domain_discrete
            name = None
        metrics = {k: _number(v) for k, v in metric_dict.items()}
        record = {
            "name": name or run_name or str(len(self._hparams)),
            "hparams": {k: _plain(v) for k, v in hparam_dict.items()}, "metrics": metrics,
        }  # fmt: skip
        records = [*self._hparams, record]
        if document_problem({**self.run.config, "hparams": records}) is None:
            self._hparams = records
            self.run.log_params({"hparams": records})
        else:
            self._file(f"hparams/{record['name']}.json", json.dumps(record).encode(), None,
                       "add_hparams", "hparams beyond the config's bounds are kept as "
                       "artifacts hparams/<name>.json")  # fmt: skip
        step = len(self._hparams) - 1 if global_step is None else global_step
        self.run.log(metrics, step=max(step, 0))

    # Curves, embeddings, layouts, graphs and meshes: artifacts.

    @_guarded
    def add_pr_curve(
        self, tag: str, labels: Any, predictions: Any, global_step: int | None = None,
        num_thresholds: int | None = 127, weights: Any = None, walltime: float | None = None,
    ) -> None:  # fmt: skip
        """A table artifact ``pr_curves/<tag>/<step>.json``: counts, precision and recall
        per threshold."""
        table = arrays.pr_curve(labels, predictions, num_thresholds or 127, weights)
        self._table(f"pr_curves/{tag}", table, self._step(global_step))

    @_guarded
    def add_pr_curve_raw(
        self, tag: str, true_positive_counts: Any, false_positive_counts: Any,
        true_negative_counts: Any, false_negative_counts: Any, precision: Any, recall: Any,
        global_step: int | None = None, num_thresholds: int | None = 127, weights: Any = None,
        walltime: float | None = None,
    ) -> None:  # fmt: skip
        table = arrays.curve_table(
            true_positive_counts, false_positive_counts, true_negative_counts,
            false_negative_counts, precision, recall,
        )  # fmt: skip
        self._table(f"pr_curves/{tag}", table, self._step(global_step))

    @_guarded
    def add_embedding(
        self, mat: Any, metadata: Any = None, label_img: Any = None,
        global_step: int | None = None, tag: str = "default", metadata_header: Any = None,
    ) -> None:  # fmt: skip
        """Artifacts under ``embeddings/<tag>/<step>/``: ``tensors.tsv`` (a row per
        point), ``metadata.tsv`` (with ``metadata_header`` as its first row) and
        ``sprite.png`` (the label images as a grid), as TensorBoard's projector reads them."""
        step = self._step(global_step)
        folder = f"embeddings/{tag}/{_label(step)}"
        self._media.file(f"{folder}/tensors.tsv", arrays.tensors_tsv(mat), "table", step)
        if metadata is not None:
            body = arrays.metadata_tsv(metadata, metadata_header)
            self._media.file(f"{folder}/metadata.tsv", body, "table", step)
        if label_img is not None:
            sprite = arrays.image_hwc(label_img, "NCHW")
            self._media.image(f"{folder}/sprite", sprite, step)

    @_guarded
    def add_custom_scalars(self, layout: Mapping[str, Mapping[str, list[Any]]]) -> None:
        """The layout, kept as the artifact ``layouts/custom_scalars.json`` at close()."""
        for category, charts in layout.items():
            self._layout.setdefault(category, {}).update(
                {title: list(spec) for title, spec in charts.items()}
            )

    @_guarded
    def add_custom_scalars_multilinechart(
        self, tags: list[str], category: str = "default", title: str = "untitled"
    ) -> None:
        self.add_custom_scalars({category: {title: ["Multiline", list(tags)]}})

    @_guarded
    def add_custom_scalars_marginchart(
        self, tags: list[str], category: str = "default", title: str = "untitled"
    ) -> None:
        if len(tags) != 3:
            raise ValueError("a margin chart takes 3 tags: value, lower and upper bound")
        self.add_custom_scalars({category: {title: ["Margin", list(tags)]}})

    @_guarded
    def add_graph(
        self, model: Any, input_to_model: Any = None, verbose: Any = False,
        use_strict_trace: Any = True,
    ) -> None:  # fmt: skip
        """The model's structure as text (its ``repr``): ``graphs/<class>.txt``."""
        name = type(model).__name__
        self._file(f"graphs/{name}.txt", repr(model).encode(), None, "add_graph",
                   "add_graph keeps the model's structure as text (graphs/<class>.txt), "
                   "not as a graph")  # fmt: skip

    @_guarded
    def add_onnx_graph(self, onnx_model_file: Any) -> None:
        source = Path(onnx_model_file)
        self.run.log_artifact(source, f"graphs/{source.name}", "model")

    @_guarded
    def add_openvino_graph(self, xmlname: Any) -> None:
        source = Path(xmlname)
        self.run.log_artifact(source, f"graphs/{source.name}", "model")

    @_guarded
    def add_mesh(
        self, tag: str, vertices: Any, colors: Any = None, faces: Any = None,
        config_dict: Any = None, global_step: int | None = None, walltime: float | None = None,
    ) -> None:  # fmt: skip
        step = self._step(global_step)
        parts = {"vertices": vertices, "colors": colors, "faces": faces}
        buffer = arrays.npz_bytes({k: v for k, v in parts.items() if v is not None})
        self._file(f"meshes/{tag}/{_label(step)}.npz", buffer, step, "add_mesh",
                   "meshes are kept as numpy files (meshes/<tag>/<step>.npz)")  # fmt: skip

    # Delivery and the end.

    def flush(self) -> None:
        """Wait (up to 10 s) until what was written so far is delivered."""
        if not self._closed:
            self.run.flush()

    def close(self) -> None:
        """Keep the tables gathered here, and finish the run when the writer started it.
        A second close() does nothing; a write after it warns once."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._layout:
                self._media.file("layouts/custom_scalars.json", json.dumps(self._layout).encode())
        finally:
            if self._own:
                self.run.finish()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.close()

    def _table(self, name: str, table: Mapping[str, Any], step: int | None) -> None:
        self._media.file(f"{name}/{_label(step)}.json", json.dumps(table).encode(), "table", step)

    def _file(self, name: str, data: bytes, step: int | None, what: str, why: str) -> None:
        self._media.file(name, data, "file", step)
        self._media.notice_once(what, why)


def _label(step: int | None) -> str:
    return "latest" if step is None else str(step)


def _plain(value: Any) -> Any:
    """An hparam as JSON holds it: numbers, strings and booleans; anything else its text."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)
