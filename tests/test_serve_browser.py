"""`geoloc serve` in a real browser: Debian's headless Chromium (selenium) against the command started
as a child process on loopback, over a real database with real shared images.

Set GEOLOC_SCREENSHOT_DIR to also write the search page's screenshot there as serve.png (palette PNG,
small enough for the README: docs/serve.png is made this way).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from PIL import Image

from geoloc.childenv import child_env
from geoloc.config import REPO_ROOT
from retrieval_data import TINY_MODEL, subset_fixture

pytestmark = pytest.mark.slow  # starts `geoloc serve` (TensorFlow) and Chromium

subset_db = subset_fixture()
WINDOW = (1280, 820)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(subset_db, tmp_path_factory):
    """`geoloc serve` on a free loopback port, after one evaluation run of the tiny model."""
    from geoloc.retrieval.evaluate import evaluate

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOLOC_DATABASE_URL", subset_db.url)
        evaluate(model=TINY_MODEL, split="test", version="v1", k=10)
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = child_env({"GEOLOC_DATABASE_URL": subset_db.url, "PYTHONPATH": str(REPO_ROOT),
                     "TF_CPP_MIN_LOG_LEVEL": "2"})
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "geoloc", "serve", "--port", str(port),
                                 "--model", "thumbnail-16"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if requests.get(url + "/api/models", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url, subset_db
    finally:
        proc.terminate()
        proc.wait(20)
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from geoloc.imagery.backends.browser import BrowserSettings, chrome_options

    settings = BrowserSettings(window=WINDOW)
    profile = tempfile.mkdtemp(prefix="geoloc-test-chromium-")
    driver = webdriver.Chrome(service=Service(settings.chromedriver, env=child_env()),
                              options=chrome_options(settings, profile))
    driver.set_window_size(*WINDOW)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait_state(driver, *states: str, timeout: float = 60) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body.dataset.state") in states)
    return driver.execute_script("return document.body.dataset.state")


def _images_loaded(driver, selector: str) -> list[int]:
    from selenium.webdriver.support.ui import WebDriverWait

    script = f"return [...document.querySelectorAll({selector!r})].map(i => i.complete ? i.naturalWidth : -1)"
    WebDriverWait(driver, 30).until(lambda d: all(w >= 0 for w in d.execute_script(script)))
    return driver.execute_script(script)


def _save(driver, path: Path) -> Path:
    driver.save_screenshot(str(path))
    with Image.open(path) as im:
        assert im.size[0] >= WINDOW[0] - 20
    return path


def test_uploading_a_photo_shows_its_neighbours_and_the_prediction(site, browser, shared_data, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, db = site
    with sa.create_engine(db.url).connect() as conn:
        img = conn.execute(sa.text(
            "SELECT i.id, i.location_id, i.path FROM images i WHERE i.location_id = :l AND i.heading = 1 "
            "ORDER BY i.time_index LIMIT 1"), {"l": db.location_ids[2]}).one()
    photo = next((shared_data / "images" / "Cropped_Test_v1_buffer_75").rglob(Path(img.path).name))
    browser.get(url + "/")
    _wait_state(browser, "ready")
    options = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#model option")]
    assert options == [TINY_MODEL, "thumbnail-16"]  # both ready, the tiny model is newer
    browser.find_element(By.CSS_SELECTOR, "#model option[value='thumbnail-16']").click()
    browser.find_element(By.ID, "file").send_keys(str(photo))
    assert _wait_state(browser, "done", "error") == "done", browser.find_element(By.ID, "status").text

    items = browser.find_elements(By.CSS_SELECTOR, "#neighbours li.neighbour")
    assert len(items) == 5
    assert items[0].get_attribute("data-image-id") == str(img.id)  # the same file is in the database
    first = items[0].text
    assert "#1 location " + str(img.location_id) in first and "distance 0.0000" in first
    assert "heading 1" in first and "from the prediction" in first
    assert all(w > 0 for w in _images_loaded(browser, "#neighbours img"))
    assert browser.find_element(By.ID, "prediction").text.startswith("consensus: location ")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.consensus-marker")) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.best-marker")) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.neighbour-marker")) == 5
    assert browser.find_element(By.ID, "query").find_element(By.TAG_NAME, "div").text.startswith(photo.name)
    browser.execute_script("document.querySelector('aside').scrollTop = 0")
    shot = _save(browser, tmp_path / "serve.png")
    out_dir = os.environ.get("GEOLOC_SCREENSHOT_DIR")
    if out_dir:
        with Image.open(shot) as im:
            im.convert("RGB").quantize(256).save(Path(out_dir) / "serve.png", optimize=True)

    # "show on map" of the third neighbour centres the map on it
    third = items[2]
    third.find_element(By.CSS_SELECTOR, "button.centre").click()
    centre = browser.execute_script("const c = document.getElementById('map').leafletMap.getCenter();"
                                    "return [c.lat, c.lng];")
    with sa.create_engine(db.url).connect() as conn:
        lat, lng = conn.execute(sa.text(
            "SELECT ST_Y(l.geom), ST_X(l.geom) FROM images i JOIN locations l ON l.id = i.location_id "
            "WHERE i.id = :i"), {"i": int(third.get_attribute("data-image-id"))}).one()
    assert centre == pytest.approx([lat, lng], abs=1e-5)

    # a click on the map draws a 400 m circle there and searches again inside it
    browser.execute_script("document.getElementById('radius').value = 400;"
                           "document.body.dataset.state = 'clicking'")
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "map")).click().perform()
    assert _wait_state(browser, "done", "error") == "done", browser.find_element(By.ID, "status").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.region-circle")) == 1
    clicked = browser.execute_script("const c = document.getElementById('map').leafletMap.getCenter();"
                                     "return [c.lat, c.lng];")
    ids = [int(li.get_attribute("data-image-id"))
           for li in browser.find_elements(By.CSS_SELECTOR, "#neighbours li.neighbour")]
    assert len(ids) == 5
    with sa.create_engine(db.url).connect() as conn:
        farthest = conn.execute(sa.text(
            "SELECT max(ST_Distance(l.geom::geography, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography)) "
            "FROM images i JOIN locations l ON l.id = i.location_id WHERE i.id = ANY(:ids)"),
            {"lat": clicked[0], "lng": clicked[1], "ids": ids}).scalar()
    assert farthest <= 400 + 2  # the click lands within a pixel or two of the centre



def test_the_rerank_box_searches_again_and_shows_inliers(site, browser, shared_data):
    from selenium.webdriver.common.by import By

    url, db = site
    with sa.create_engine(db.url).connect() as conn:
        img = conn.execute(sa.text("SELECT id, path FROM images WHERE location_id = :l ORDER BY id LIMIT 1"),
                           {"l": db.location_ids[1]}).one()
    photo = next((shared_data / "images" / "Cropped_Test_v1_buffer_75").rglob(Path(img.path).name))
    browser.get(url + "/")
    _wait_state(browser, "ready")
    browser.find_element(By.ID, "file").send_keys(str(photo))
    assert _wait_state(browser, "done", "error") == "done", browser.find_element(By.ID, "status").text
    assert "inliers" not in browser.find_element(By.ID, "neighbours").text
    browser.execute_script("document.body.dataset.state = 'rechecking'")
    browser.find_element(By.ID, "rerank").click()  # ticking the box searches the same photo again
    assert _wait_state(browser, "done", "error") == "done", browser.find_element(By.ID, "status").text
    items = browser.find_elements(By.CSS_SELECTOR, "#neighbours li.neighbour")
    assert items[0].get_attribute("data-image-id") == str(img.id)  # the same file is in the database
    assert all(" inliers" in li.text for li in items)


def test_a_file_name_is_shown_as_text_and_a_bad_file_as_an_error(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = site
    bad = tmp_path / "<img src=x onerror=alert(1)>.jpg"
    bad.write_text("not a picture")
    browser.get(url + "/")
    _wait_state(browser, "ready")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    assert _wait_state(browser, "done", "error") == "error"
    assert browser.find_element(By.ID, "status").text == f"Error: {bad.name}: not a JPEG, PNG or WebP image"
    assert browser.find_elements(By.CSS_SELECTOR, "#query img[src='x']") == []


def test_the_evaluation_view_draws_every_query_worst_first(site, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, db = site
    with sa.create_engine(db.url).connect() as conn:
        run_id, n = conn.execute(sa.text(
            "SELECT r.id, count(*) FROM eval_runs r JOIN models m ON m.id = r.model_id "
            "JOIN eval_predictions p ON p.run_id = r.id WHERE m.name = :m GROUP BY r.id"), {"m": TINY_MODEL}).one()
        images = conn.execute(sa.text("SELECT count(*) FROM images WHERE split = 'test' AND version = 'v1'")).scalar()
        worst = conn.execute(sa.text(
            "SELECT p.query_image_id, p.top1_location_id, p.top1_error_m FROM eval_predictions p "
            "WHERE p.run_id = :r ORDER BY p.top1_error_m DESC LIMIT 1"), {"r": run_id}).one()
        predicted_images = conn.execute(sa.text("SELECT count(*) FROM images WHERE location_id = :l"),
                                        {"l": worst.top1_location_id}).scalar()
    database = images - n  # every test image but the queries
    browser.get(url + "/eval")
    _wait_state(browser, "ready")
    runs = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#run option")]
    assert len(runs) == 2 and runs[1].startswith(f"#{run_id} {TINY_MODEL} (model, test v1, {n} queries)")
    browser.execute_script("document.body.dataset.state = 'switching'")
    Select(browser.find_element(By.ID, "run")).select_by_value(str(run_id))
    _wait_state(browser, "ready")
    rows = browser.find_elements(By.CSS_SELECTOR, "#worst li")
    assert len(rows) == n
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.prediction-line")) == n
    assert f"query {worst.query_image_id} " in rows[0].text
    assert rows[0].text.startswith((f"{round(worst.top1_error_m)} m", f"{worst.top1_error_m / 1000:.2f} km"))
    metrics = browser.find_element(By.ID, "metrics").text
    assert "Recall@1" in metrics and f"database images {database}" in metrics

    rows[0].click()
    _wait_state(browser, "selected")
    assert "selected" in rows[0].get_attribute("class")
    assert len(_images_loaded(browser, "#detail .images.predicted img")) == predicted_images
    assert all(w > 0 for w in _images_loaded(browser, "#detail img"))
    _save(browser, tmp_path / "eval.png")
