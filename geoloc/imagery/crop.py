"""Raw viewer screenshots -> model inputs: crop the panorama out of the page, resize, RGB JPEG.

The original's box for its 1512x810 screenshots was recovered from the two golden pairs in
``raw_examples`` by searching box and resampling filter for the smallest mean absolute pixel
difference: the square (591, 0, 1261, 670) - the panorama above the time-machine strip, right of
the info card - resized with bicubic filtering and saved as JPEG quality 75 (4:2:0) reproduces the
golden crops to about 1 grey level (1.21 and 0.69 of 255; a 1-pixel shift of any edge gives 4+).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from PIL import Image as PILImage

from ..errors import InputError
from ..imagefile import open_image

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
    """Write via a fresh temporary file and rename, so a crash never leaves half a file under PATH."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _targets(inputs: list[Path], out: Path) -> list[Path]:
    """OUT/<stem>.jpg per input; InputError when two inputs share one, or one would replace an input."""
    targets = [Path(out) / (Path(p).stem + ".jpg") for p in inputs]
    first: dict[Path, Path] = {}
    sources = {Path(p).resolve(): Path(p) for p in inputs}
    for path, target in zip(inputs, targets):
        key = target.resolve()
        if key in first:
            raise InputError(f"{first[key]} and {path} would both be cropped into {target}",
                             hint="crop them into different --out folders")
        first[key] = Path(path)
        if key in sources:
            raise InputError(f"{sources[key]}: cropping into {out} would overwrite this input",
                             hint="choose another --out folder")
    return targets


def ingest_crop(inputs: list[Path], out: Path, box: tuple[int, int, int, int] = DEFAULT_BOX,
                size: int = DEFAULT_SIZE) -> list[Path]:
    """Crop every screenshot in INPUTS into OUT (same name, .jpg); all are checked before any is written.

    Inputs are opened only through `open_image`: symlinks, FIFOs, folders, oversized files and
    decompression bombs are refused with a one-line InputError naming the file.
    """
    if not inputs:
        raise InputError("no input screenshots given")
    targets = _targets([Path(p) for p in inputs], Path(out))
    results = []
    for path, target in zip(inputs, targets):
        img = open_image(Path(path))
        results.append((target, jpeg_bytes(crop_screenshot(img, box, size, name=str(path)))))
    for target, data in results:
        try:
            write_atomically(target, data)
        except OSError as exc:
            raise InputError(f"{target}: cannot be written ({exc.strerror or exc})") from None
    return targets
