"""A loopback stand-in for the Street View Image Metadata API that answers from the real data.

OK (pano_id, location, date, copyright of the real answer) for points within ~1 m of a grid point
of the buffer CSVs, ZERO_RESULTS for the points of no_response_locations.csv (and anything else),
REQUEST_DENIED for a wrong key. Faults are injected on a schedule of request numbers: HTTP 429/500,
a delay longer than the client's timeout, garbage instead of JSON, OVER_QUERY_LIMIT.
Every request is counted per location (``per_location``); ``gate=N`` holds every answer until N
requests were in flight at once (more than one worker's concurrency: several workers are asking).
"""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PATH = "/maps/api/streetview/metadata"
FAULTS = ("429", "500", "timeout", "garbage", "over_query_limit")
CELL = 1e-4  # degrees; a match is searched in the 3 x 3 cells around a point


@dataclass(frozen=True)
class RealPoint:
    lat: float
    lng: float
    answer: dict


def _latlng(text: str) -> tuple[float, float]:
    lat, lng = (float(v) for v in text.split(","))
    return lat, lng


def load_real_points(shared_data: Path) -> tuple[list[RealPoint], list[RealPoint]]:
    """(grid points with an OK answer from the buffer CSVs, grid points answered ZERO_RESULTS)."""
    ok = []
    for path in sorted((shared_data / "buffers").glob("new_order_buffer_*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                lat, lng = _latlng(row["Location"])
                ok.append(RealPoint(lat, lng, {
                    "copyright": row["Copyright"], "date": row["Date"],
                    "location": {"lat": float(row["Latitude"]), "lng": float(row["Longitude"])},
                    "pano_id": row["PanoID"], "status": "OK", "_idx": int(row["Location_idx"])}))
    zero = []
    with open(shared_data / "no_response_locations.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            lat, lng = _latlng(row["Location"])
            zero.append(RealPoint(lat, lng, {"status": "ZERO_RESULTS", "_idx": int(row["Location_idx"])}))
    return ok, zero


def metres_between(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    dy = (lat2 - lat1) * 111_320.0
    dx = (lng2 - lng1) * 111_320.0 * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, dy)


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 64  # socketserver's default backlog of 5 is below a worker's --concurrency 8

    def handle_error(self, request, client_address):  # clients that time out or get killed hang up
        pass


class FakeStreetView:
    """Use as a context manager; ``url`` is the base URL to give the worker."""

    def __init__(self, shared_data: Path, key: str, *, schedule: dict[int, str] | None = None,
                 every: dict[str, int] | None = None, delay: float = 1.0, deny_after: int | None = None,
                 gate: int = 0):
        self.key = key
        self.per_location: Counter = Counter()  # location query value -> requests
        self.gate, self.in_flight, self.opened = gate, 0, threading.Condition()
        self.schedule = dict(schedule or {})
        self.every = dict(every or {})
        self.delay = delay
        self.deny_after = deny_after
        self.requests = 0
        self.faults: dict[str, int] = {}
        self.answered: dict[str, int] = {}
        self._lock = threading.Lock()
        self.ok, self.zero = load_real_points(shared_data)
        self._cells: dict[tuple[int, int], list[RealPoint]] = {}
        for p in self.ok + self.zero:
            self._cells.setdefault(self._cell(p.lat, p.lng), []).append(p)
        self._server: ThreadingHTTPServer | None = None

    @staticmethod
    def _cell(lat: float, lng: float) -> tuple[int, int]:
        return int(math.floor(lat / CELL)), int(math.floor(lng / CELL))

    def nearest(self, lat: float, lng: float, within_m: float = 1.0) -> RealPoint | None:
        ci, cj = self._cell(lat, lng)
        best, best_d = None, within_m
        for i in (ci - 1, ci, ci + 1):
            for j in (cj - 1, cj, cj + 1):
                for p in self._cells.get((i, j), ()):
                    d = metres_between(lat, lng, p.lat, p.lng)
                    if d <= best_d:
                        best, best_d = p, d
        return best

    def answer_for(self, lat: float, lng: float) -> dict:
        p = self.nearest(lat, lng)
        if p is None:
            return {"status": "ZERO_RESULTS"}
        return {k: v for k, v in p.answer.items() if not k.startswith("_")}

    def _fault(self) -> tuple[int, str | None]:
        with self._lock:
            self.requests += 1
            n = self.requests
            fault = self.schedule.get(n)
            for kind, period in self.every.items():
                if fault is None and period and n % period == 0:
                    fault = kind
            if fault:
                self.faults[fault] = self.faults.get(fault, 0) + 1
        return n, fault

    def _wait_at_gate(self, location: str) -> None:
        with self.opened:
            self.per_location[location] += 1
            self.in_flight += 1
            if self.in_flight >= self.gate:
                self.gate = 0
                self.opened.notify_all()
            self.opened.wait_for(lambda: self.gate == 0, timeout=60)

    def _left_gate(self) -> None:
        with self.opened:
            self.in_flight -= 1

    def _count(self, status: str) -> None:
        with self._lock:
            self.answered[status] = self.answered.get(status, 0) + 1

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms delayed-ACK stalls
            wbufsize = 64 * 1024

            def log_message(self, *args):  # the request line holds the key: never log it
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json; charset=UTF-8"):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

            def _json(self, doc: dict, code: int = 200):
                self._send(code, json.dumps(doc).encode())

            def do_GET(self):
                url = urlsplit(self.path)
                if url.path != PATH:
                    self._json({"status": "NOT_FOUND"}, 404)
                    return
                api._wait_at_gate(parse_qs(url.query).get("location", [""])[0])
                try:
                    self._answer(url)
                finally:
                    api._left_gate()

            def _answer(self, url):
                n, fault = api._fault()
                if fault == "429":
                    self._json({"status": "OVER_QUERY_LIMIT", "error_message": "rate"}, 429)
                    return
                if fault == "500":
                    self._send(500, b"<html>Internal Server Error</html>", "text/html")
                    return
                if fault == "garbage":
                    self._send(200, b'{"status": "OK", "pano_id": <<garbage>>')
                    return
                if fault == "over_query_limit":
                    self._json({"status": "OVER_QUERY_LIMIT"})
                    return
                if fault == "timeout":
                    time.sleep(api.delay)
                query = parse_qs(url.query)
                if query.get("key", [""])[0] != api.key or (api.deny_after is not None and n > api.deny_after):
                    api._count("REQUEST_DENIED")
                    self._json({"status": "REQUEST_DENIED", "error_message": "The provided API key is invalid."})
                    return
                try:
                    lat, lng = _latlng(query["location"][0])
                except (KeyError, ValueError):
                    api._count("INVALID_REQUEST")
                    self._json({"status": "INVALID_REQUEST"})
                    return
                doc = api.answer_for(lat, lng)
                api._count(doc["status"])
                self._json(doc)

        return Handler

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeStreetView:
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-streetview", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
