"""The original project's approach: a real (headless) browser on a viewer page.

Per location: open the page, read the time-machine date buttons ("Month YYYY"), and for every
date click it, then four times screenshot the panorama canvas and click the rotate control. The
screenshots are cropped/resized like the original's (geoloc.imagery.crop). Page URL and element
selectors are settings (BrowserSettings, CLI options, GEOLOC_VIEWER_* variables), not code.

Chromium and chromedriver are Debian's (/usr/bin); the driver path is given explicitly, so
selenium never tries to download anything. chromedriver (and the Chromium it starts) gets the
minimal environment of geoloc.childenv, never the API key or the database URL.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import quote


from ...childenv import child_env
from ...errors import ConfigError, InputError
from ...imagefile import open_image
from ..crop import DEFAULT_BOX, DEFAULT_SIZE, crop_screenshot, jpeg_bytes
from ...months import parse_month
from ..rate import RateLimiter
from . import HEADINGS, CapturedImage, CaptureFailed, LocationInfo

DEFAULT_URL_TEMPLATE = "{base}/viewer?lat={lat}&lng={lng}&pano={pano}"


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(name) or default


@dataclass
class BrowserSettings:
    url_template: str = field(default_factory=lambda: _env("GEOLOC_VIEWER_URL", DEFAULT_URL_TEMPLATE))
    base_url: str | None = field(default_factory=lambda: _env("GEOLOC_VIEWER_BASE_URL", None))
    date_selector: str = field(default_factory=lambda: _env("GEOLOC_VIEWER_DATE_SELECTOR", ".time-machine button"))
    canvas_selector: str = field(default_factory=lambda: _env("GEOLOC_VIEWER_CANVAS_SELECTOR", "canvas"))
    rotate_selector: str = field(default_factory=lambda: _env("GEOLOC_VIEWER_ROTATE_SELECTOR", "button.rotate"))
    settle_s: float = 1.0  # pause after a click so the viewer can redraw
    timeout_s: float = 20.0  # for the page to show its date buttons
    window: tuple[int, int] = (1600, 1100)  # must fit the 1512x810 canvas
    box: tuple[int, int, int, int] = DEFAULT_BOX
    size: int = DEFAULT_SIZE
    chromium: str = "/usr/bin/chromium"
    chromedriver: str = "/usr/bin/chromedriver"

    def url_for(self, location: LocationInfo) -> str:
        if "{base}" in self.url_template and not self.base_url:
            raise ConfigError("GEOLOC_VIEWER_BASE_URL is not set (the viewer page's base URL)",
                              hint="set GEOLOC_VIEWER_BASE_URL or pass --viewer-url with a full URL template")
        try:
            return self.url_template.format(base=(self.base_url or "").rstrip("/"), lat=location.lat,
                                            lng=location.lng, pano=quote(location.pano_id or ""),
                                            id=location.id)
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(f"--viewer-url: '{self.url_template}' is not a valid template ({exc}); "
                             "use {base}, {lat}, {lng}, {pano}, {id}") from None


def chrome_options(settings: BrowserSettings, profile_dir: str):
    from selenium.webdriver.chrome.options import Options

    opts = Options()
    opts.binary_location = settings.chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--window-size={settings.window[0]},{settings.window[1]}", f"--user-data-dir={profile_dir}"):
        opts.add_argument(arg)
    return opts


class BrowserBackend:
    name = "browser"

    def __init__(self, settings: BrowserSettings, limiter: RateLimiter):
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service

        self.settings = settings
        self.limiter = limiter
        for exe in (settings.chromium, settings.chromedriver):
            if not os.path.exists(exe):
                raise ConfigError(f"{exe} not found",
                                  hint="install Debian's chromium and chromium-driver (scripts/install-system.sh)")
        self.profile = tempfile.mkdtemp(prefix="geoloc-chromium-")
        try:
            self.driver = webdriver.Chrome(service=Service(settings.chromedriver, env=child_env()),
                                           options=chrome_options(settings, self.profile))
        except WebDriverException as exc:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise ConfigError(f"cannot start headless chromium: {exc.msg or exc}") from None

    def _find(self, selector: str, what: str):
        from selenium.common.exceptions import NoSuchElementException
        from selenium.webdriver.common.by import By

        try:
            return self.driver.find_element(By.CSS_SELECTOR, selector)
        except NoSuchElementException:
            raise CaptureFailed(f"no {what} matching '{selector}' on {self.driver.current_url}") from None

    def _date_buttons(self):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, self.settings.date_selector)

    def _open(self, url: str) -> list[str]:
        """Load the page and return its date labels once the buttons are there."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        self.limiter.acquire()
        self.driver.get(url)
        try:
            WebDriverWait(self.driver, self.settings.timeout_s).until(lambda d: self._date_buttons())
        except TimeoutException:
            raise CaptureFailed(f"no date buttons matching '{self.settings.date_selector}' on the viewer page "
                                f"within {self.settings.timeout_s:g} s") from None
        return [b.text.strip() for b in self._date_buttons()]

    def _click_date(self, label: str) -> None:
        for button in self._date_buttons():
            if button.text.strip() == label:
                self.limiter.acquire()
                button.click()
                return
        raise CaptureFailed(f"date button '{label}' disappeared")

    def _canvas_png(self) -> bytes:
        """The canvas as PNG: Chromium's own capture of its rectangle (lossless, about twice as fast as
        WebDriver's element screenshot), or the element screenshot where that is unavailable."""
        from selenium.common.exceptions import WebDriverException

        element = self._find(self.settings.canvas_selector, "canvas")
        try:
            x, y, w, h = self.driver.execute_script(
                "const r = arguments[0].getBoundingClientRect();"
                "return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];", element)
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "optimizeForSpeed": True, "captureBeyondViewport": True,
                "clip": {"x": x, "y": y, "width": w, "height": h, "scale": 1}})
            return base64.b64decode(shot["data"])
        except (WebDriverException, AttributeError, KeyError, TypeError, ValueError):
            return element.screenshot_as_png

    def _screenshot(self) -> bytes:
        try:  # Chromium's bytes get the same limits as a user's file
            shot = open_image(self._canvas_png(), name="canvas screenshot")
            cropped = crop_screenshot(shot, self.settings.box, self.settings.size, name="canvas screenshot")
        except InputError as exc:
            raise CaptureFailed(str(exc)) from None
        return jpeg_bytes(cropped)

    def capture(self, location: LocationInfo) -> list[CapturedImage]:
        from selenium.common.exceptions import WebDriverException

        try:
            labels = self._open(self.settings.url_for(location))
            dated = []
            for label in labels:
                month = parse_month(label)
                if month is None:
                    raise CaptureFailed(f"date button '{label}' is not 'Month YYYY'")
                dated.append((month, label))
            dated.sort(key=lambda d: d[0], reverse=True)  # newest first = time index 0
            images = []
            for time_index, (month, label) in enumerate(dated):
                self._click_date(label)
                time.sleep(self.settings.settle_s)
                for heading in range(HEADINGS):
                    images.append(CapturedImage(heading, time_index, month, self._screenshot()))
                    self._find(self.settings.rotate_selector, "rotate control").click()
                    time.sleep(self.settings.settle_s)
            return images
        except WebDriverException as exc:
            raise CaptureFailed(f"browser: {type(exc).__name__}: {(exc.msg or '').splitlines()[0] if exc.msg else exc}") from None

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
