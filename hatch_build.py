"""Build hook: fetch the dashboard's chart library (uPlot) from the npm registry, and
compile safeboard's three C modules (the event-file reader's loops, the SDK's system calls:
its spool writer and its probe of an away server, and the SDK's packing of logged points).

Runs at every wheel build, editable installs included (``pip install .`` and
``pip install -e .``).

- uPlot: it downloads the pinned tarball with urllib, checks its SHA-512 against the
  pinned npm "integrity" value, and extracts the ES module build and the stylesheet into
  ``src/safeboard/web/static/vendor/`` (gitignored), which the server serves from its own
  origin. Nothing is executed from the package; no node is needed.
- ``src/safeboard/eventfiles/_scan.c``, ``src/safeboard/client/_writes.c`` and
  ``src/safeboard/sdk/_pack.c`` (``NATIVES``):
  each compiled next to its source with the compiler and flags Python was built with
  (``sysconfig``), about a second. Where that fails (no C compiler or no Python headers)
  the build goes on with a warning that says how to get them (pip shows it with ``-v``;
  ``safeboard import tensorboard`` says it again at its start): the reader then runs its
  numpy path, to the same results, about 4x slower (safeboard.eventfiles.accel), the
  SDK writes its spool with Python's own calls (safeboard.client.config) and packs logged
  points in Python (safeboard.sdk.batches).

Also runnable by hand: ``python3 hatch_build.py`` (re)fetches the files and (re)compiles
the C modules in the tree (after editing one).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shlex
import subprocess
import sys
import sysconfig
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


class Native:
    """One of safeboard's C modules: its source under src/safeboard, what it is in words,
    and what runs without it (the warning when it cannot be built). A plain class: hatchling
    loads this file outside ``sys.modules``, where a dataclass cannot be made."""

    def __init__(self, source: str, what: str, without: str) -> None:
        self.source = source
        self.what = what
        self.without = without

    @property
    def path(self) -> Path:
        return ROOT / "src" / "safeboard" / self.source

    @property
    def library(self) -> Path:
        """Where the compiled module goes: next to its source, as Python imports it."""
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        return self.path.with_name(f"{self.path.stem}{suffix}")


NATIVES = (
    Native(
        "eventfiles/_scan.c",
        "C event-file reader",
        "`safeboard import tensorboard` reads event files about 4x slower",
    ),
    Native(
        "client/_writes.c",
        "C file writer",
        "the SDK writes its spool with Python's system calls, and run.log() waits more "
        "often while the server is away",
    ),
    Native(
        "sdk/_pack.c",
        "C packer of logged points",
        "run.log() packs what it queued in Python, about 3x slower, in the training loop",
    ),
)


def _compile(native: Native) -> str | None:
    """Compile one module; None, or what went wrong."""
    linker = sysconfig.get_config_var("LDSHARED")
    include = sysconfig.get_paths()["include"]
    if not linker:
        return "this Python names no C compiler (sysconfig LDSHARED)"
    if not (Path(include) / "Python.h").is_file():
        return f"Python's headers are missing ({include}/Python.h)"
    digest = hashlib.sha256(native.path.read_bytes()).hexdigest()
    command = [
        *shlex.split(os.environ.get("LDSHARED", linker)), "-O2", "-fPIC",
        f"-I{include}", f'-DSB_SOURCE_DIGEST="{digest}"', str(native.path),
        "-o", str(native.library),
    ]  # fmt: skip
    try:
        done = subprocess.run(  # noqa: S603  (the compiler Python was built with)
            command, capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{command[0]} did not run: {exc}"
    if done.returncode:
        return f"{' '.join(command)} failed:\n{done.stderr.strip()}"
    return None


def build_native(native: Native) -> Path | None:
    """Compile a C module; the library's path, or None (with a warning) where it cannot be
    compiled here. The source's SHA-256 is compiled in (``source_digest``): a test finds
    a library older than its source."""
    problem = _compile(native)
    if problem is None:
        return native.library
    native.library.unlink(missing_ok=True)  # never a library older than its source
    sys.stderr.write(
        f"WARNING: safeboard's {native.what} was not built: {problem}\n"
        f"safeboard works without it; {native.without}. "
        "To build it, install a C compiler and Python's headers (Debian and Ubuntu: "
        "apt install gcc python3-dev) and install safeboard again.\n"
    )
    return None


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script, outside a build
    pass
else:

    class VendorBuildHook(BuildHookInterface):  # type: ignore[type-arg]
        PLUGIN_NAME = "custom"

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:
            fetch_vendor()
            for native in NATIVES:
                library = build_native(native)
                if library is None:
                    continue
                build_data["pure_python"] = False  # a wheel for this platform and Python
                build_data["infer_tag"] = True
                if version != "editable":  # gitignored: included by name
                    where = Path(native.source).with_name(library.name).as_posix()
                    build_data["force_include"][str(library)] = f"safeboard/{where}"
            if version != "editable":
                # Gitignored, so hatch would leave them out of the wheel: include them.
                for name in UPLOT_FILES.values():
                    path = VENDOR / name
                    build_data["force_include"][str(path)] = f"safeboard/web/static/vendor/{name}"


if __name__ == "__main__":
    fetch_vendor()
    print(f"uPlot {UPLOT_VERSION} in {VENDOR}")  # noqa: T201
    for native in NATIVES:
        built = build_native(native)
        print(f"{native.what}: {built or 'not built (above)'}")  # noqa: T201
