"""Crop/resize of raw viewer screenshots, checked against the original's golden pairs."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from bad_images import png_bomb, run_geoloc
from PIL import Image

from geoloc.errors import InputError
from geoloc.imagefile import MAX_IMAGE_BYTES
from geoloc.imagery.crop import DEFAULT_BOX, crop_screenshot, ingest_crop


def _pairs(shared_data):
    raws = sorted((shared_data / "raw_examples").glob("*.png"))
    assert len(raws) == 2
    return [(raw, raw.with_suffix(".jpg")) for raw in raws]


def _mad(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b.convert("RGB"), dtype=np.float32)).mean())


def test_cli_crop_matches_golden_pairs(cli, shared_data, tmp_path):
    pairs = _pairs(shared_data)
    res = cli("ingest", "crop", *[raw for raw, _ in pairs], "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert res.stdout == f"2 image(s) cropped to 224x224 into {tmp_path / 'out'}\n"
    figures = []
    for raw, golden in pairs:
        ours = Image.open(tmp_path / "out" / golden.name)
        assert ours.size == (224, 224) and ours.mode == "RGB" and ours.format == "JPEG"
        figures.append(_mad(ours, Image.open(golden)))
    print(f"golden-pair mean absolute pixel difference (0..255): {figures[0]:.2f}, {figures[1]:.2f}; box {DEFAULT_BOX}")
    assert all(f < 1.5 for f in figures), figures
    # a box one pixel off is already clearly worse: the figure really pins the original's box
    raw, golden = pairs[0]
    l, t, r, b = DEFAULT_BOX
    shifted = crop_screenshot(Image.open(raw), (l + 1, t, r + 1, b))
    assert _mad(shifted, Image.open(golden)) > figures[0] + 1.5


def test_crop_rejects_unexpected_size(shared_data, tmp_path, cli):
    small = tmp_path / "small.png"
    Image.new("RGBA", (1280, 720)).save(small)
    with pytest.raises(InputError, match=r"small.png: is 1280x720, expected a 1512x810 screenshot for the default crop box"):
        crop_screenshot(Image.open(small), name=str(small))
    res = cli("ingest", "crop", small, "--out", tmp_path / "out")
    assert res.exit_code == 1
    assert res.stderr == (f"Error: {small}: is 1280x720, expected a 1512x810 screenshot for the default crop box\n"
                          "Hint: pass --box left,top,right,bottom for screenshots of another size\n")
    assert not (tmp_path / "out").exists()
    # an own box works for other sizes as long as it fits
    res = cli("ingest", "crop", small, "--out", tmp_path / "out", "--box", "100,0,820,720", "--size", "64")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out" / "small.jpg").size == (64, 64)
    res = cli("ingest", "crop", small, "--out", tmp_path / "out", "--box", "100,0,2000,720")
    assert res.exit_code == 1
    assert res.stderr == f"Error: {small}: crop box 100,0,2000,720 does not fit in 1280x720\n"


def test_crop_rejects_bad_box_and_non_images(cli, tmp_path):
    res = cli("ingest", "crop", tmp_path / "x.png", "--out", tmp_path, "--box", "5,5,1")
    assert res.exit_code == 1
    assert res.stderr == "Error: --box: '5,5,1' is not left,top,right,bottom with left < right and top < bottom\n"
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(InputError, match="notes.png: not a readable image"):
        ingest_crop([text], tmp_path / "out")


def test_crop_refuses_bombs_and_special_files_with_one_line(cli, shared_data, tmp_path):
    raw = _pairs(shared_data)[0][0]
    out = tmp_path / "out"
    bomb = png_bomb(tmp_path / "bomb.png", 20000, 20000)
    res = cli("ingest", "crop", bomb, "--out", out)
    assert res.exit_code == 1
    assert res.stderr == (f"Error: {bomb}: image has 400,000,000 pixels, more than the limit of 40,000,000 "
                          "(a decompression bomb or a huge image)\n")
    huge = png_bomb(tmp_path / "huge.png", 8000, 6000)
    res = cli("ingest", "crop", huge, "--out", out)
    assert res.exit_code == 1
    assert res.stderr == (f"Error: {huge}: image is 8000 x 6000 pixels, more than the limit of 40,000,000 "
                          "(a decompression bomb or a huge image)\n")
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)
    res = cli("ingest", "crop", big, "--out", out)
    assert res.exit_code == 1
    assert res.stderr == f"Error: {big}: {MAX_IMAGE_BYTES + 1:,} bytes, more than the limit of {MAX_IMAGE_BYTES:,}\n"
    link = tmp_path / "link.png"
    link.symlink_to(raw)
    res = cli("ingest", "crop", raw, link, "--out", out)
    assert res.exit_code == 1 and res.stderr == f"Error: {link}: is a symbolic link, not an image file\n"
    folder = tmp_path / "folder.png"
    folder.mkdir()
    res = cli("ingest", "crop", folder, "--out", out)
    assert res.exit_code == 1 and res.stderr == f"Error: {folder}: is a folder, not an image file\n"
    assert not out.exists()  # nothing written unless every input can be cropped


def test_crop_does_not_wait_on_a_fifo(tmp_path):
    fifo = tmp_path / "screen.png"
    os.mkfifo(fifo)
    res = run_geoloc("ingest", "crop", fifo, "--out", tmp_path / "out")
    assert res.returncode == 1 and res.stderr == f"Error: {fifo}: is a FIFO, not an image file\n"


def test_crop_never_overwrites_an_input_or_one_crop_with_another(cli, shared_data, tmp_path):
    raw = _pairs(shared_data)[0][0]
    shot = tmp_path / "shot.jpg"
    Image.open(raw).convert("RGB").save(shot, quality=95)
    before = shot.read_bytes()
    res = cli("ingest", "crop", shot, "--out", tmp_path)
    assert res.exit_code == 1
    assert res.stderr == (f"Error: {shot}: cropping into {tmp_path} would overwrite this input\n"
                          "Hint: choose another --out folder\n")
    assert shot.read_bytes() == before
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(raw, tmp_path / sub / "shot.png")
    a, b = tmp_path / "a" / "shot.png", tmp_path / "b" / "shot.png"
    res = cli("ingest", "crop", a, b, "--out", tmp_path / "out")
    assert res.exit_code == 1
    assert res.stderr == (f"Error: {a} and {b} would both be cropped into {tmp_path / 'out' / 'shot.jpg'}\n"
                          "Hint: crop them into different --out folders\n")
    assert not (tmp_path / "out").exists()
