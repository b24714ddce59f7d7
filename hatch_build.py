"""Build hook: fetch the dashboard's chart library (uPlot) from the npm registry.

Runs at every wheel build, editable installs included (``pip install .`` and
``pip install -e .``). It downloads the pinned tarball with urllib, checks its SHA-512
against the pinned npm "integrity" value, and extracts the ES module build and the
stylesheet into ``src/safeboard/web/static/vendor/`` (gitignored), which the server
serves from its own origin. Nothing is executed from the package; no node is needed.

Also runnable by hand: ``python3 hatch_build.py`` (re)fetches the files into the tree.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

UPLOT_VERSION = "1.6.32"
UPLOT_URL = f"https://registry.npmjs.org/uplot/-/uplot-{UPLOT_VERSION}.tgz"
# From `npm view uplot@1.6.32 dist.integrity`.
UPLOT_INTEGRITY = (
    "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGz"
    "Qm/ep3tOkyTxpiQIw=="
)
# Member of the tarball -> file under vendor/.
UPLOT_FILES = {
    "package/dist/uPlot.esm.js": "uPlot.esm.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "uPlot.LICENSE",
}
ROOT = Path(__file__).resolve().parent
VENDOR = ROOT / "src" / "safeboard" / "web" / "static" / "vendor"
STAMP = VENDOR / "VERSION"
TIMEOUT_SECONDS = 60
MAX_DOWNLOAD_BYTES = 8 * 1024 * 1024  # the tarball is about 0.2 MB; never hold more than this


class VendorError(RuntimeError):
    """The chart library could not be fetched or did not match its pinned digest."""


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            data: bytes = response.read(MAX_DOWNLOAD_BYTES + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise VendorError(
            f"safeboard's build could not download its chart library from {url}: {exc}.\n"
            "The dashboard needs it. Check that the npm registry is reachable (proxy "
            "settings: HTTPS_PROXY) and build again."
        ) from exc
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise VendorError(
            f"{url} sent more than {MAX_DOWNLOAD_BYTES} bytes; the chart library is far "
            "smaller: refusing it"
        )
    return data


def check_integrity(data: bytes, integrity: str = UPLOT_INTEGRITY) -> None:
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        raise VendorError(
            f"the downloaded {UPLOT_URL} does not match its pinned {algorithm} digest "
            f"(expected {expected}, got {digest}); refusing to use it"
        )


def extract(data: bytes, target: Path = VENDOR) -> list[Path]:
    """Write the wanted members (by exact name, never a path from the archive) to target."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member, name in UPLOT_FILES.items():
            handle = archive.extractfile(member)
            if handle is None:
                raise VendorError(f"{UPLOT_URL} holds no {member}")
            path = target / name
            path.write_bytes(handle.read())
            written.append(path)
    (target / "VERSION").write_text(f"uplot {UPLOT_VERSION} {UPLOT_INTEGRITY}\n")
    return written


def up_to_date(target: Path = VENDOR) -> bool:
    stamp = target / "VERSION"
    return (
        stamp.is_file()
        and stamp.read_text().split() == ["uplot", UPLOT_VERSION, UPLOT_INTEGRITY]
        and all((target / name).is_file() for name in UPLOT_FILES.values())
    )


def fetch_vendor(target: Path = VENDOR) -> None:
    if up_to_date(target):
        return
    data = _download(UPLOT_URL)
    check_integrity(data)
    extract(data, target)


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script, outside a build
    pass
else:

    class VendorBuildHook(BuildHookInterface):  # type: ignore[type-arg]
        PLUGIN_NAME = "custom"

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:
            fetch_vendor()
            if version != "editable":
                # Gitignored, so hatch would leave them out of the wheel: include them.
                for name in UPLOT_FILES.values():
                    path = VENDOR / name
                    build_data["force_include"][str(path)] = f"safeboard/web/static/vendor/{name}"


if __name__ == "__main__":
    fetch_vendor()
    print(f"uPlot {UPLOT_VERSION} in {VENDOR}")  # noqa: T201
