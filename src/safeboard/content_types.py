"""The content types an artifact may carry: one allow-list, by file extension.

The client proposes a type from the file's extension (:func:`type_for_name`), and the
server stores only a type of this table (:func:`allowed_type`): anything else, whatever
the client sent, is ``application/octet-stream``. Python's ``mimetypes`` reads the
machine's own tables (``/etc/mime.types``), which named a PyTorch checkpoint
``application/vnd.snesdev-page-table``; this table is the same on every machine.

A type here is metadata: what a download is served as is decided by the server
(``artifacts.ranges``: only raster images whose first bytes prove their type show inline;
everything else, SVG and HTML included, downloads as an ``application/octet-stream``
attachment).
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["ALLOWED_TYPES", "BINARY", "TYPES_BY_EXTENSION", "allowed_type", "type_for_name"]

BINARY = "application/octet-stream"

TYPES_BY_EXTENSION = MappingProxyType(
    {
        # images (only PNG, JPEG, GIF and WebP with proven bytes ever show inline)
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".gif": "image/gif",
        ".webp": "image/webp",
        ".svg": "image/svg+xml",  # can carry script: always an attachment
        # text
        ".txt": "text/plain",
        ".log": "text/plain",
        ".csv": "text/csv",
        ".tsv": "text/tab-separated-values",
        ".json": "application/json",
        ".jsonl": "application/x-ndjson",
        ".yaml": "application/yaml",
        ".yml": "application/yaml",
        ".toml": "application/toml",
        ".md": "text/markdown",
        ".html": "text/html",  # never inline: an attachment
        ".htm": "text/html",
        # documents and archives
        ".pdf": "application/pdf",
        ".zip": "application/zip",
        ".gz": "application/gzip",
        ".tar": "application/x-tar",
        # arrays and models: bytes for a program, not for a browser
        ".npy": "application/x-npy",
        ".npz": "application/zip",
        ".pt": BINARY,
        ".pth": BINARY,
        ".ckpt": BINARY,
        ".safetensors": BINARY,
        ".bin": BINARY,
        ".onnx": BINARY,
        ".pkl": BINARY,
        ".h5": BINARY,
    }
)
ALLOWED_TYPES = frozenset({BINARY, *TYPES_BY_EXTENSION.values()})


def type_for_name(name: str) -> str:
    """The type a file's name proposes: its extension in the table, else binary."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    dot = base.rfind(".")
    return TYPES_BY_EXTENSION.get(base[dot:], BINARY) if dot > 0 else BINARY


def allowed_type(declared: str) -> str:
    """What the server stores for a declared type: the type itself if the table has it
    (compared without parameters and case), else binary."""
    bare = declared.split(";", 1)[0].strip().lower()
    return bare if bare in ALLOWED_TYPES else BINARY
