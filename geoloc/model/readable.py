"""Which image files the embedders can read, decided from the file and its header alone.

Every file `geoloc embed` and `geoloc search` hand to a decoder passes `check_image_header` first:
geoloc.imagefile's rules (a regular file, at most MAX_IMAGE_BYTES, at most MAX_IMAGE_PIXELS as the
header announces them) and a format TensorFlow decodes. No pixel is decoded here, so a decompression
bomb costs nothing. Kept free of TensorFlow so the thumbnail baseline and the CLI start fast.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import InputError
from ..imagefile import check_file, check_pixels

TF_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")  # what tf.io.decode_image reads


@contextmanager
def open_checked(source: str | Path | BinaryIO) -> Iterator:
    """The PIL image of SOURCE, header read and checked, pixels not yet decoded; every failure, also
    while the caller decodes, becomes an InputError naming it. SOURCE is a file path (checked with
    `check_file`) or a binary stream whose bytes already passed geoloc.imagefile (an upload)."""
    from PIL import Image, UnidentifiedImageError

    if hasattr(source, "read"):
        label, handle = getattr(source, "name", None) or "upload", source
    else:
        label = handle = check_file(source)
    try:
        with warnings.catch_warnings():  # Pillow warns from 89 M pixels; ours refuses from 40 M below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(handle)
        with im:
            check_pixels(str(label), *im.size)
            if im.format not in TF_FORMATS:
                raise InputError(f"{label}: {im.format} images are not supported (use JPEG, PNG, GIF, BMP or WebP)")
            yield im
    except UnidentifiedImageError:
        raise InputError(f"{label}: not an image (unrecognised file format)") from None
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
        raise InputError(f"{label}: {first_line(exc)}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{label}: not a readable image ({first_line(exc)})") from None


def check_image_header(path: str | Path) -> Path:
    """PATH when it is an image file we can decode within the limits; InputError naming it otherwise."""
    with open_checked(path):
        return Path(path)


def reason_of(path: str | Path, error: BaseException) -> str:
    """The message of an error about PATH without its leading 'PATH: '."""
    text = first_line(error)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
