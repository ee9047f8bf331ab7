"""Hostile image files for the import and crop tests: decompression bombs, and a way to run the CLI in
a child process that is killed (not waited on forever) when a FIFO makes it hang."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header announces WIDTH x HEIGHT pixels (what a decompression bomb looks like
    to a decoder before it starts)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def jpeg_bomb(path: Path, width: int, height: int) -> Path:
    """A small baseline JPEG whose frame header announces WIDTH x HEIGHT pixels."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "grey").save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def geoloc_command(*args) -> list[str]:
    return [sys.executable, "-m", "geoloc", *map(str, args)]


def geoloc_env() -> dict[str, str]:
    """This process's environment (GEOLOC_DATABASE_URL of the test database) with this checkout first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def run_geoloc(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    """`geoloc ARGS` in a child process; the test fails (and the child's process group is killed) when
    it has not finished after TIMEOUT seconds."""
    proc = subprocess.Popen(geoloc_command(*args), env=geoloc_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            encoding="utf-8", errors="backslashreplace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"geoloc {' '.join(map(str, args))} still running after {timeout} s: it hangs")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
