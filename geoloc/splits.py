"""The data splits, defined once: every option, check and message takes them from here."""

from __future__ import annotations

SPLITS = ("train", "val", "test")
