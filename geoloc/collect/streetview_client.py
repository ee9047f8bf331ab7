"""A small client of the Street View Image Metadata API: rate-limited, retrying, key-safe.

The key travels only in the query string of the request. Every text that could leave this module
(exception messages, urllib3's debug log lines) goes through ``redact`` first.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
from dataclasses import dataclass
from datetime import date

import requests

from ..errors import ConfigError, RemoteError
from ..imagery.rate import RateLimiter
from ..months import parse_iso_month

KEY_ENV = "GEOLOC_GOOGLE_API_KEY"
BASE_URL_ENV = "GEOLOC_STREETVIEW_BASE_URL"
DEFAULT_BASE_URL = "https://maps.googleapis.com"
PATH = "/maps/api/streetview/metadata"
DEFAULT_TIMEOUT = 10.0  # seconds to wait for one answer
DEFAULT_RETRIES = 5  # retries of one point on 429/5xx/timeouts/garbage
DEFAULT_BACKOFF = 0.5  # seconds before the first retry; doubles each time
# Final answers are stored; OVER_QUERY_LIMIT and UNKNOWN_ERROR are worth another try (Google's advice).
FINAL_STATUSES = ("OK", "ZERO_RESULTS", "NOT_FOUND", "INVALID_REQUEST")
TRANSIENT_STATUSES = ("OVER_QUERY_LIMIT", "UNKNOWN_ERROR")
_KEY_PARAM = re.compile(r"(key=)[^&\s'\"]+")


def api_key() -> str:
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise ConfigError(f"{KEY_ENV} is not set",
                          hint=f"export {KEY_ENV}=... (a Google Maps Platform key with the Street View Static API)")
    return key


def base_url(option: str | None = None) -> str:
    url = (option or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"Street View base URL '{redact(url)}' is not an http(s) URL")
    return url


def redact(text: str, key: str | None = None) -> str:
    """TEXT without the API key (as a key= parameter or anywhere verbatim)."""
    text = _KEY_PARAM.sub(r"\1***", str(text))
    key = key if key is not None else os.environ.get(KEY_ENV, "").strip()
    return text.replace(key, "***") if key else text


class _RedactingFilter(logging.Filter):
    """urllib3 logs request URLs at debug level (geoloc -vv): keep the key out of them (metadata and
    Static API requests alike)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactingFilter())


@dataclass(frozen=True)
class Answer:
    status: str
    pano_id: str | None = None
    lat: float | None = None
    lng: float | None = None
    capture_month: date | None = None
    copyright: str | None = None
    attempts: int = 1


class TransientFailure(Exception):
    """Every try for one point failed transiently (the message is already redacted)."""


def parse_answer(data) -> Answer | str:
    """An Answer, or the reason why DATA is not a usable answer (to retry)."""
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        return "malformed JSON (no status)"
    status = data["status"]
    if status == "OK":
        loc = data.get("location")
        try:
            lat, lng = float(loc["lat"]), float(loc["lng"])
        except (TypeError, KeyError, ValueError):
            return "malformed OK answer (no location)"
        pano = data.get("pano_id")
        if not isinstance(pano, str) or not pano:
            return "malformed OK answer (no pano_id)"
        return Answer("OK", pano, lat, lng, parse_iso_month(data.get("date"), allow_day=True), data.get("copyright"))
    if status in FINAL_STATUSES:
        return Answer(status)
    if status in TRANSIENT_STATUSES:
        return status
    if status == "REQUEST_DENIED":
        return Answer(status)
    return f"unknown status '{status[:40]}'"


class MetadataClient:
    """Thread-safe: one requests.Session per thread, one shared rate limit."""

    def __init__(self, key: str, base: str, *, rate: float = 0, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF, max_backoff: float = 30.0):
        self.key = key
        self.url = base.rstrip("/") + PATH
        self.limiter = RateLimiter(rate or None)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._local = threading.local()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent, retries included
        self.retried = 0

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _count(self, retried: bool = False) -> None:
        with self._lock:
            if retried:
                self.retried += 1
            else:
                self.requests += 1

    def _denied(self, data) -> RemoteError:
        detail = data.get("error_message") if isinstance(data, dict) else None
        message = "the Street View metadata API answered REQUEST_DENIED"
        if detail:
            message += f": {redact(str(detail)[:200], self.key)}"
        return RemoteError(message, hint=f"check {KEY_ENV}: a valid key with the Street View Static API enabled")

    def _try(self, lat: float, lng: float) -> Answer | str:
        self.limiter.acquire()
        self._count()
        try:
            resp = self._session().get(self.url, params={"location": f"{lat:.7f},{lng:.7f}", "key": self.key},
                                       timeout=self.timeout)
        except requests.Timeout:
            return f"no answer within {self.timeout:g} s"
        except requests.RequestException as exc:
            return redact(f"{type(exc).__name__}: {exc}", self.key)[:300]
        if resp.status_code == 429 or resp.status_code >= 500:
            return f"HTTP {resp.status_code}"
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code != 200:
            if isinstance(data, dict) and data.get("status") == "REQUEST_DENIED":
                raise self._denied(data)
            raise RemoteError(f"the Street View metadata API answered HTTP {resp.status_code} "
                              f"for location {lat:.7f},{lng:.7f}",
                              hint=f"check the base URL ({redact(self.url, self.key)})")
        if data is None:
            return "malformed JSON"
        answer = parse_answer(data)
        if isinstance(answer, Answer) and answer.status == "REQUEST_DENIED":
            raise self._denied(data)
        return answer

    def stop(self) -> None:
        """Make lookups still queued or backing off give up at once (the run is ending)."""
        self._stopped.set()

    def lookup(self, lat: float, lng: float) -> Answer:
        """The final answer for one point; TransientFailure after all retries, RemoteError to stop."""
        for attempt in range(self.retries + 1):
            if self._stopped.is_set():
                raise TransientFailure(f"{lat:.7f},{lng:.7f}: run stopped")
            outcome = self._try(lat, lng)
            if isinstance(outcome, Answer):
                return outcome if attempt == 0 else Answer(**{**outcome.__dict__, "attempts": attempt + 1})
            if attempt < self.retries:
                self._count(retried=True)
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                if self._stopped.wait(delay * random.uniform(1.0, 1.25)):
                    break
        raise TransientFailure(f"{lat:.7f},{lng:.7f}: {outcome} (after {attempt + 1} tries)")
