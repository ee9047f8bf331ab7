"""The official Street View Static API: one request per (panorama, heading), resized to the model input.

Panoramas of a location: its default one (from the metadata) plus any historical ids supplied
for it (``--panos FILE``), newest first = time index 0. The key comes from GEOLOC_GOOGLE_API_KEY
and never appears in errors, logs or rows: messages name the panorama and heading, not the URL,
and the key's handling (variable, redaction, urllib3's log filter) is the metadata client's.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import requests

from ...collect.streetview_client import BASE_URL_ENV, DEFAULT_BASE_URL, KEY_ENV, api_key, redact
from ...errors import InputError, RemoteError
from ...imagefile import open_image
from ...months import parse_iso_month
from ..crop import DEFAULT_SIZE, RESAMPLE, jpeg_bytes
from ..rate import RateLimiter
from . import HEADINGS, CapturedImage, CaptureFailed, LocationInfo

PATH = "/maps/api/streetview"


def _base_url() -> str:
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


@dataclass
class StaticApiSettings:
    base_url: str = field(default_factory=_base_url)
    start_heading: float = 0.0  # degrees of view 0; the others follow in 90 degree steps
    fov: int = 90
    pitch: int = 0
    request_size: str = "640x640"
    size: int = DEFAULT_SIZE
    timeout_s: float = 30.0
    historical: dict[int, list[tuple[str, date | None]]] = field(default_factory=dict)


def read_panos_csv(path: Path) -> dict[int, list[tuple[str, date | None]]]:
    """location_id,pano_id,month (YYYY-MM, may be empty) -> {location: [(pano, month)]}; header optional."""
    result: dict[int, list[tuple[str, date | None]]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    for n, row in enumerate(csv.reader(lines), start=1):
        if not row or (n == 1 and row[0].strip().lower() == "location_id"):
            continue
        if len(row) not in (2, 3) or not row[0].strip().isdigit() or not row[1].strip():
            raise InputError(f"{path}, line {n}: expected location_id,pano_id[,YYYY-MM]")
        month = None
        if len(row) == 3 and row[2].strip():
            month = parse_iso_month(row[2])
            if month is None:
                raise InputError(f"{path}, line {n}: month '{row[2].strip()}' is not YYYY-MM")
        result.setdefault(int(row[0]), []).append((row[1].strip(), month))
    return result


def panoramas_of(location: LocationInfo, historical: list[tuple[str, date | None]]) -> list[tuple[str, date | None]]:
    """Default + historical panoramas, each once, newest first (undated last)."""
    seen, panos = set(), []
    for pano, month in ([(location.pano_id, location.capture_month)] if location.pano_id else []) + historical:
        if pano not in seen:
            seen.add(pano)
            panos.append((pano, month))
    return sorted(panos, key=lambda p: (p[1] is None, -(p[1].toordinal() if p[1] else 0)))


class StaticApiBackend:
    name = "static-api"

    def __init__(self, settings: StaticApiSettings, limiter: RateLimiter):
        self.key = api_key()
        self.settings = settings
        self.limiter = limiter
        self.session = requests.Session()

    def _redact(self, text: str) -> str:
        return redact(text, self.key)

    def _fetch(self, pano: str, heading: float) -> bytes:
        s = self.settings
        params = {"pano": pano, "heading": f"{heading:g}", "fov": s.fov, "pitch": s.pitch,
                  "size": s.request_size, "return_error_code": "true", "key": self.key}
        where = f"pano {pano} heading {heading:g}"
        self.limiter.acquire()
        try:
            resp = self.session.get(s.base_url.rstrip("/") + PATH, params=params, timeout=s.timeout_s)
        except requests.RequestException as exc:
            raise CaptureFailed(f"{where}: {type(exc).__name__}: {self._redact(str(exc))}") from None
        if resp.status_code == 403:
            raise RemoteError(f"Street View Static API refused the request for {where} (HTTP 403)",
                              hint=f"check the key in {KEY_ENV} and that the API is enabled for it")
        if resp.status_code != 200:
            raise CaptureFailed(f"{where}: HTTP {resp.status_code}")
        if not resp.headers.get("Content-Type", "").startswith("image/"):
            raise CaptureFailed(f"{where}: answer is {resp.headers.get('Content-Type') or 'untyped'}, not an image")
        return resp.content

    def capture(self, location: LocationInfo) -> list[CapturedImage]:
        panos = panoramas_of(location, self.settings.historical.get(location.id, []))
        if not panos:
            raise CaptureFailed(f"location {location.id} has no panorama id")
        images = []
        for time_index, (pano, month) in enumerate(panos):
            for h in range(HEADINGS):
                heading = (self.settings.start_heading + 90 * h) % 360
                data = self._fetch(pano, heading)
                try:  # the provider's bytes get the same limits as a user's file
                    im = open_image(data, name=f"pano {pano} heading {heading:g}")
                except InputError as exc:
                    raise CaptureFailed(str(exc)) from None
                small = im.resize((self.settings.size, self.settings.size), RESAMPLE)
                images.append(CapturedImage(h, time_index, month, jpeg_bytes(small)))
        return images

    def close(self) -> None:
        self.session.close()
