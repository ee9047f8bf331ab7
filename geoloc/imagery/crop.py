"""Raw viewer screenshots -> model inputs: crop the panorama out of the page, resize, RGB JPEG.

The original's box for its 1512x810 screenshots was recovered from the two golden pairs in
``raw_examples`` by searching box and resampling filter for the smallest mean absolute pixel
difference: the square (591, 0, 1261, 670) - the panorama above the time-machine strip, right of
the info card - resized with bicubic filtering and saved as JPEG quality 75 (4:2:0) reproduces the
golden crops to about 1 grey level (1.21 and 0.69 of 255; a 1-pixel shift of any edge gives 4+).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from ..errors import InputError

SCREENSHOT_SIZE = (1512, 810)
DEFAULT_BOX = (591, 0, 1261, 670)  # left, top, right, bottom in screenshot pixels
DEFAULT_SIZE = 224
RESAMPLE = PILImage.Resampling.BICUBIC
JPEG_QUALITY = 75


def parse_box(text: str) -> tuple[int, int, int, int]:
    """'l,t,r,b' -> a box; InputError when it is not four integers with l < r and t < b."""
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[0] < 0 or box[1] < 0 or box[0] >= box[2] or box[1] >= box[3]:
        raise InputError(f"--box: '{text}' is not left,top,right,bottom with left < right and top < bottom")
    return box  # type: ignore[return-value]


def crop_screenshot(img: PILImage.Image, box: tuple[int, int, int, int] = DEFAULT_BOX,
                    size: int = DEFAULT_SIZE, name: str = "image") -> PILImage.Image:
    """The model input cut from a screenshot: BOX, resized to SIZE x SIZE, RGB.

    The default box only makes sense for 1512x810 screenshots, so with it any other size is an
    InputError rather than a silently wrong crop; an own box must fit in the image.
    """
    if tuple(box) == DEFAULT_BOX and img.size != SCREENSHOT_SIZE:
        raise InputError(f"{name}: is {img.width}x{img.height}, expected a {SCREENSHOT_SIZE[0]}x{SCREENSHOT_SIZE[1]} "
                         "screenshot for the default crop box",
                         hint="pass --box left,top,right,bottom for screenshots of another size")
    if box[2] > img.width or box[3] > img.height:
        raise InputError(f"{name}: crop box {','.join(map(str, box))} does not fit in {img.width}x{img.height}")
    if size < 1:
        raise InputError(f"--size: {size} must be a positive number of pixels")
    return img.convert("RGB").crop(box).resize((size, size), RESAMPLE)


def jpeg_bytes(img: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file under PATH."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def ingest_crop(inputs: list[Path], out: Path, box: tuple[int, int, int, int] = DEFAULT_BOX,
                size: int = DEFAULT_SIZE) -> list[Path]:
    """Crop every screenshot in INPUTS into OUT (same name, .jpg); all are checked before any is written."""
    if not inputs:
        raise InputError("no input screenshots given")
    results = []
    for path in inputs:
        path = Path(path)
        try:
            with PILImage.open(path) as img:
                img.load()
                cropped = crop_screenshot(img, box, size, name=str(path))
        except FileNotFoundError:
            raise InputError(f"{path}: file not found") from None
        except UnidentifiedImageError:
            raise InputError(f"{path}: not an image") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot be read as an image ({exc})") from None
        results.append((Path(out) / (path.stem + ".jpg"), jpeg_bytes(cropped)))
    for target, data in results:
        write_atomically(target, data)
    return [t for t, _ in results]
