"""The original project's image file names and folder names, parsed and produced in one place.

File: ``<location>_<heading>_<time>_<Month YYYY>_<scraped at>.jpg``, e.g.
``1835_0_3_September 2021_2024-01-03 19:45:27.106051.jpg`` (spaces and colons included).
Folder: ``Cropped_<Split>_<version>_buffer_<m>`` (e.g. ``Cropped_Training_v2_buffer_100``); the
original spelled its second test set ``Cropped_Test_v2_buffer60``, so the separator before the
buffer's metres is optional.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import PurePath

from ..months import UNDATED, month_label, parse_month
from ..splits import SPLITS

NAME_PATTERN = "<location>_<heading>_<time>_<Month YYYY>_<scraped at>.jpg"

_NAME = re.compile(
    r"^(?P<loc>\d+)_(?P<heading>\d+)_(?P<time>\d+)_(?P<month>[A-Za-z]+ \d{4}|" + UNDATED + r")_"
    r"(?P<scraped>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)\.jpe?g$",
    re.IGNORECASE,
)
_FOLDER = re.compile(r"^Cropped_(?P<split>Training|Validation|Test)_(?P<version>v\d+)_buffer_?(?P<buffer>\d+)$",
                     re.IGNORECASE)
FOLDER_PATTERN = "Cropped_<Split>_<version>_buffer_<m>"
FOLDER_SPLITS = dict(zip(("training", "validation", "test"), SPLITS))  # folder word -> split


@dataclass(frozen=True)
class ImageName:
    location_id: int
    heading: int
    time_index: int
    capture_month: date | None
    scraped_at: datetime


@dataclass(frozen=True)
class FolderInfo:
    split: str
    version: str
    buffer_m: int
    name: str  # the folder it was read from


def parse_image_name(name: str) -> ImageName | None:
    """The fields of an original-style file name, or None when it does not follow the pattern."""
    m = _NAME.match(name)
    if not m:
        return None
    month = None
    if m["month"].lower() != UNDATED.lower():
        month = parse_month(m["month"])
        if month is None:
            return None
    try:
        scraped = datetime.fromisoformat(m["scraped"])
    except ValueError:
        return None
    return ImageName(int(m["loc"]), int(m["heading"]), int(m["time"]), month, scraped)


def image_name(location_id: int, heading: int, time_index: int, capture_month: date | None,
               scraped_at: datetime) -> str:
    """The original-style file name (so captured trees can be re-imported with `ingest images`)."""
    return (f"{location_id}_{heading}_{time_index}_{month_label(capture_month)}_"
            f"{scraped_at.isoformat(sep=' ', timespec='microseconds')}.jpg")


def parse_folder(name: str) -> FolderInfo | None:
    m = _FOLDER.match(name)
    if not m:
        return None
    return FolderInfo(FOLDER_SPLITS[m["split"].lower()], m["version"].lower(), int(m["buffer"]), name)


def folder_info(root_name: str, relative: PurePath) -> FolderInfo | None:
    """Split/version from the nearest ``Cropped_*`` folder between the import root and the file."""
    for part in reversed((root_name, *relative.parent.parts)):
        info = parse_folder(part)
        if info:
            return info
    return None
