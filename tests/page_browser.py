"""Opening geoloc's pages in real headless Chromium, offline.

folium's map pages load Leaflet and jQuery from public CDNs over HTTPS. The test machine has no
network, so Chromium resolves every host name to a loopback HTTPS server (self-signed certificate,
accepted by this browser only) that serves the real Leaflet (XStatic-Leaflet) and jQuery (Debian's
libjs-jquery) files and answers 404 to everything else (map tiles, fonts, Bootstrap).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from geoloc.childenv import child_env

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
JQUERY = Path("/usr/share/javascript/jquery/jquery.min.js")


def _leaflet_dir() -> Path:
    import xstatic.pkg.leaflet as leaflet

    return Path(leaflet.BASE_DIR)


class AssetServer:
    """HTTPS on 127.0.0.1: leaflet.js, leaflet.css and jQuery by file name, 404 otherwise."""

    def __init__(self):
        leaflet = _leaflet_dir()
        self.files = {"leaflet.js": (leaflet / "leaflet.js", "text/javascript"),
                      "leaflet.css": (leaflet / "leaflet.css", "text/css")}
        self.requests: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="geoloc-assets-"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(self.tmp / "key.pem"),
                        "-out", str(self.tmp / "cert.pem")], check=True, capture_output=True, env=child_env())
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(f"{self.headers.get('Host')}{self.path}")
                name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                found = outer.files.get(name)
                if found is None and name.startswith("jquery") and name.endswith(".js"):
                    found = (JQUERY, "text/javascript")
                if found is None:
                    self.send_error(404)
                    return
                body = found[0].read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", found[1])
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.tmp / "cert.pem", self.tmp / "key.pem")
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Browser:
    """Headless Chromium (fresh profile) whose every host name leads to ASSETS."""

    def __init__(self, assets: AssetServer):
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="geoloc-pages-chromium-")
        opts = Options()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1200,900", "--allow-file-access-from-files",
                    f"--host-resolver-rules=MAP * 127.0.0.1:{assets.port}", "--ignore-certificate-errors",
                    f"--user-data-dir={self.profile}"):
            opts.add_argument(arg)
        opts.accept_insecure_certs = True
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=child_env()), options=opts)
        self.driver.set_page_load_timeout(60)

    def open(self, page: Path) -> None:
        """Load PAGE from file:// and wait until it and its scripts have run."""
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.get(Path(page).resolve().as_uri())
        WebDriverWait(self.driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module, with the loopback server for the map's assets."""
    with AssetServer() as assets:
        b = Browser(assets)
        try:
            yield b
        finally:
            b.close()
