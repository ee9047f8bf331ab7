"""Opening image files safely: one set of limits and one set of rules for every command.

Every command that reads a user's image (import, crop, embed, search, the web page) goes through
`check_file` and `open_image`, so a symlink, a FIFO, a folder named like an image, an over-large file
or a decompression bomb gives the same one-line `InputError` everywhere, before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path

from .errors import InputError

MAX_IMAGE_BYTES = 50 * 1024 * 1024  # a 224 px crop is ~20 kB, a raw 1512x810 screenshot ~1.5 MB
MAX_IMAGE_PIXELS = 40_000_000  # width x height; ~8000 x 5000, far above any street-view frame
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def image_file(row) -> Path:
    """The file of an `images` row (a mapping or an object with ``root`` and ``path``): root / path."""
    if isinstance(row, dict):
        return Path(row["root"]) / row["path"]
    return Path(row.root) / row.path


def check_file(path: str | os.PathLike) -> Path:
    """PATH if it is a regular file (not a symlink, FIFO or folder) of at most MAX_IMAGE_BYTES."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISLNK(st.st_mode):
        raise InputError(f"{path}: is a symbolic link, not an image file")
    if not stat.S_ISREG(st.st_mode):
        kind = "folder" if stat.S_ISDIR(st.st_mode) else "FIFO" if stat.S_ISFIFO(st.st_mode) else "special file"
        raise InputError(f"{path}: is a {kind}, not an image file")
    if st.st_size == 0:
        raise InputError(f"{path}: empty file")
    if st.st_size > MAX_IMAGE_BYTES:
        raise InputError(f"{path}: {st.st_size:,} bytes, more than the limit of {MAX_IMAGE_BYTES:,}")
    return path


def check_pixels(name: str, width: int, height: int) -> None:
    """InputError when an image's header announces more than MAX_IMAGE_PIXELS."""
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: image has no pixels ({width} x {height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{name}: image is {width} x {height} pixels, more than the limit of "
                         f"{MAX_IMAGE_PIXELS:,} (a decompression bomb or a huge image)")


def bomb_error(name: str, exc: Exception) -> InputError:
    """Pillow's own DecompressionBombError (far above MAX_IMAGE_PIXELS) in the words of `check_pixels`."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return InputError(f"{name}: image has {size}, more than the limit of {MAX_IMAGE_PIXELS:,} "
                      "(a decompression bomb or a huge image)")


def open_image(source: str | os.PathLike | bytes, name: str | None = None, mode: str = "RGB"):
    """A fully decoded PIL image in MODE from a file path or bytes; InputError naming it otherwise.

    The header is read first and its size checked, so a decompression bomb is refused before any
    pixel is decoded. Files are checked with `check_file` first.
    """
    from PIL import Image

    if isinstance(source, (bytes, bytearray)):
        label = name or "upload"
        if len(source) == 0:
            raise InputError(f"{label}: empty file")
        if len(source) > MAX_IMAGE_BYTES:
            raise InputError(f"{label}: {len(source):,} bytes, more than the limit of {MAX_IMAGE_BYTES:,}")
        handle = io.BytesIO(source)
    else:
        label = name or str(source)
        handle = check_file(source)
    try:
        with Image.open(handle) as im:
            check_pixels(label, *im.size)
            im.load()
            return im.convert(mode) if im.mode != mode else im.copy()
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise bomb_error(label, exc) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{label}: not a readable image ({detail})") from None
