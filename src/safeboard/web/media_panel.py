"""The run page's histograms, image series and texts per step (issue 17): three sections
that media.js fills from the API (``/steps``, ``/distribution``, ``/histogram``,
``/texts``, ``/images``). Everything a run logged is set as text by the script (app.js
``el``), never as HTML: a text that holds markup shows the markup."""

from __future__ import annotations

from safeboard.web.html import Markup, el

__all__ = ["COMPARE_SCRIPT", "SCRIPT", "image_compare_section", "media_sections"]

SCRIPT = "media.js"


def _section(title: str, box: str, empty: str) -> Markup:
    return el(
        "section",
        el("h2", title),
        el("p", "Loading…", id=f"{box}-status", role="status", class_="hint", data_empty=empty),
        el("div", id=box, class_="media-panels"),
        id=f"{box}-section",
        hidden=True,
    )


def media_sections() -> Markup:
    """Hidden until media.js finds something to show in them."""
    return el(
        "div",
        _section("Histograms", "histograms", "No histograms."),
        _section("Images", "images", "No image series."),
        _section("Text", "texts", "No text."),
        id="media",
    )


COMPARE_SCRIPT = "images.js"


def image_compare_section() -> Markup:
    """The compare view's images: one key across the runs, side by side, at one step
    (images.js fills it; hidden while no run has an image series)."""
    return el(
        "section",
        el("h2", "Images"),
        el(
            "div",
            el("label", "Image key", el("select", id="image-key")),
            el(
                "label",
                "Step",
                el("input", type="range", id="image-compare-step", min="0", max="0", value="0"),
                el("output", "", id="image-compare-at", for_="image-compare-step"),
                class_="step-slider",
            ),
            class_="toolbar",
        ),
        el("div", id="image-compare", class_="media-panels"),
        id="image-compare-section",
        hidden=True,
    )
