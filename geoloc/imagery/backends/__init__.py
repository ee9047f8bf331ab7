"""Capture backends: each turns one location into its images (every date x four headings).

A backend only fetches pixels; the worker (geoloc.imagery.capture) writes files and rows, so all
backends share the queue, the atomic writes and the one-transaction-per-location guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from ...errors import InputError
from ..rate import RateLimiter

BACKENDS = ("static-api", "browser")
HEADINGS = 4  # the original turned 90 degrees between four views


@dataclass(frozen=True)
class LocationInfo:
    id: int
    lat: float
    lng: float
    pano_id: str | None
    capture_month: date | None
    split: str | None


@dataclass(frozen=True)
class CapturedImage:
    heading: int  # 0..3, the n-th view after n quarter turns
    time_index: int  # 0 = newest date
    capture_month: date | None
    jpeg: bytes  # already the model input (cropped/resized RGB JPEG)
    taken_at: datetime = field(default_factory=datetime.now)  # local time, as the original's names


class CaptureFailed(Exception):
    """One location could not be captured this time (retried later); the message is stored as-is."""


class Backend(Protocol):
    name: str

    def capture(self, location: LocationInfo) -> list[CapturedImage]: ...

    def close(self) -> None: ...


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise InputError(f"unknown capture backend '{name}' (choose one of: {', '.join(BACKENDS)})")
    return name


def open_backend(name: str, settings=None, limiter: RateLimiter | None = None) -> Backend:
    """A backend instance for one worker (each worker has its own HTTP session or browser)."""
    check_backend(name)
    limiter = limiter or RateLimiter(None)
    if name == "static-api":
        from .static_api import StaticApiBackend, StaticApiSettings

        return StaticApiBackend(settings or StaticApiSettings(), limiter)
    from .browser import BrowserBackend, BrowserSettings

    return BrowserBackend(settings or BrowserSettings(), limiter)
