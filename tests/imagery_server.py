"""Loopback stand-ins for the capture backends' remote ends, serving the real shared images.

- StreetViewStub: /maps/api/streetview?pano=..&heading=.. answers with the real 224x224 image of
  that panorama's location/date and heading (upscaled to the requested 640x640), checks the key
  and the fixed parameters, and logs every request. Requests for the panoramas in ``hang`` get no
  answer until the stub stops (a backend stuck on a location, for kill tests).
- ViewerStub: /viewer?lat=..&lng=..&pano=.. is tests/viewer/viewer.html: a 1512x810 canvas showing
  a real raw screenshot from raw_examples with the location's real image in the crop box, date
  buttons labelled "Month YYYY" and a rotate control.
"""

from __future__ import annotations

import io
import json
import threading
import time
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from PIL import Image


VIEWER_DIR = Path(__file__).resolve().parent / "viewer"


@lru_cache(maxsize=2)
def shared_index(images_root: Path) -> dict[int, dict[tuple[int, int], tuple[Path, str]]]:
    """location -> {(heading, time index): (file, 'Month YYYY')} over the whole shared tree."""
    index: dict[int, dict[tuple[int, int], tuple[Path, str]]] = {}
    for f in images_root.rglob("*.jpg"):
        # <location>_<heading>_<time>_<Month YYYY>_<scraped at>.jpg, split here, not by the code under test
        parts = f.name.split("_")
        if len(parts) == 5 and all(p.isdigit() for p in parts[:3]):
            index.setdefault(int(parts[0]), {})[(int(parts[1]), int(parts[2]))] = (f, parts[3])
    return index


class _Server:
    def __init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                status, ctype, body = server.handle(url.path, {k: v[0] for k, v in parse_qs(url.query).items()})
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client killed mid-request (the resume test does that on purpose)

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def handle(self, path: str, query: dict) -> tuple[int, str, bytes]:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        stopping = getattr(self, "stopping", None)
        if stopping is not None:
            stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class StreetViewStub(_Server):
    """panos: pano id -> {heading index 0..3: image file}."""

    def __init__(self, panos: dict[str, dict[int, Path]], key: str, delay_s: float = 0.0,
                 fail_once: set[str] = frozenset(), gate: int = 0, hang: set[str] = frozenset(),
                 raw: dict[str, bytes] | None = None):
        super().__init__()
        self.raw = dict(raw or {})  # pano id -> the exact bytes to answer with (any heading)
        self.panos, self.key, self.delay_s = panos, key, delay_s
        self.hang, self.stopping = set(hang), threading.Event()
        self.fail_once = set(fail_once)
        # gate=N: hold every answer until requests for N different panoramas are in flight at once,
        # which only happens when N workers are capturing at the same time (after 60 s without, the
        # gate opens for good: a worker alone goes on, and the test sees it alone)
        self.gate, self.seen, self.opened = gate, set(), threading.Condition(self.lock)

    def handle(self, path, q):
        with self.lock:
            self.requests.append(dict(q, path=path, t=time.monotonic()))
            if self.gate:
                self.seen.add(q.get("pano"))
                self.opened.notify_all()
                if not self.opened.wait_for(lambda: len(self.seen) >= self.gate, timeout=60):
                    self.gate = 0
        if q.get("pano") in self.hang:
            self.stopping.wait(120)
            return 503, "text/plain", b"stopped"
        if self.delay_s:
            time.sleep(self.delay_s)
        if path != "/maps/api/streetview":
            return 404, "text/plain", b"not found"
        if q.get("key") != self.key:
            return 403, "text/plain", b"REQUEST_DENIED"
        if (q.get("fov"), q.get("pitch"), q.get("size")) != ("90", "0", "640x640"):
            return 400, "text/plain", b"unexpected parameters"
        pano = q.get("pano", "")
        with self.lock:
            if pano in self.fail_once:
                self.fail_once.discard(pano)
                return 500, "text/plain", b"backend error"
        if pano in self.raw:
            return 200, "image/jpeg", self.raw[pano]
        views = self.panos.get(pano)
        if views is None:
            return 404, "text/plain", b"ZERO_RESULTS"
        index = round(float(q.get("heading", "0")) / 90) % 4
        if index not in views:
            return 404, "text/plain", b"ZERO_RESULTS"
        buf = io.BytesIO()
        Image.open(views[index]).convert("RGB").resize((640, 640), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
        return 200, "image/jpeg", buf.getvalue()


class ViewerStub(_Server):
    """pages: pano id -> {"dates": [label, ...], "frames": [[file per heading] per date]} (dates in page order)."""

    def __init__(self, pages: dict[str, dict], background: Path):
        super().__init__()
        self.pages = pages
        self.files: dict[str, Path] = {"bg": background}
        self.data: dict[str, bytes] = {}
        for pano, page in pages.items():
            frames = []
            for row in page["frames"]:
                ids = []
                for f in row:
                    token = f"f{len(self.files)}"
                    self.files[token] = Path(f)
                    ids.append(f"/file/{token}")
                frames.append(ids)
            self.data[pano] = json.dumps({"dates": page["dates"], "frames": frames,
                                          "background": "/file/bg"}).encode()

    def handle(self, path, q):
        with self.lock:
            self.requests.append(dict(q, path=path))
        if path == "/viewer":
            return 200, "text/html", (VIEWER_DIR / "viewer.html").read_bytes()
        if path == "/viewer.js":
            return 200, "text/javascript", (VIEWER_DIR / "viewer.js").read_bytes()
        if path == "/data" and q.get("pano") in self.data:
            return 200, "application/json", self.data[q["pano"]]
        if path.startswith("/file/") and path[6:] in self.files:
            f = self.files[path[6:]]
            return 200, "image/png" if f.suffix == ".png" else "image/jpeg", f.read_bytes()
        return 404, "text/plain", b"not found"


def _yyyy_mm(label: str) -> str:
    """'September 2021' -> '2021-09', by the standard library (not by the parser under test)."""
    return datetime.strptime(label, "%B %Y").strftime("%Y-%m")


def static_api_setup(pano_of: dict[int, str], images_root: Path, dates: int = 3):
    """For locations (id -> default pano id): the stub's pano map, the --panos CSV text of the
    historical panoramas ('hist-<loc>-<t>', months from the real file names) and the expected
    {(loc, heading, time index): (source file, label)}."""
    index = shared_index(images_root)
    panos, lines, expected = {}, ["location_id,pano_id,month"], {}
    for loc, default in pano_of.items():
        for t in range(dates):
            pano = default if t == 0 else f"hist-{loc}-{t}"
            panos[pano] = {h: index[loc][(h, t)][0] for h in range(4)}
            label = index[loc][(0, t)][1]
            if t:
                lines.append(f"{loc},{pano},{_yyyy_mm(label)}")
            for h in range(4):
                expected[(loc, h, t)] = (index[loc][(h, t)][0], label)
    return panos, "\n".join(lines) + "\n", expected


def viewer_setup(pano_of: dict[int, str], images_root: Path, dates: int = 3, reverse: set[int] = frozenset()):
    """Viewer pages per pano (dates newest first, or oldest first for ids in REVERSE) and the
    expected {(loc, heading, time index): (source file, label)}."""
    index = shared_index(images_root)
    pages, expected = {}, {}
    for loc, pano in pano_of.items():
        order = list(range(dates))[::-1] if loc in reverse else list(range(dates))
        pages[pano] = {"dates": [index[loc][(0, t)][1] for t in order],
                       "frames": [[index[loc][(h, t)][0] for h in range(4)] for t in order]}
        for t in range(dates):
            for h in range(4):
                expected[(loc, h, t)] = (index[loc][(h, t)][0], index[loc][(0, t)][1])
    return pages, expected
