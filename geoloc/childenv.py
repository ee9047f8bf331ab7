"""The environment geoloc gives the programs it starts (PostgreSQL, psql, Chromium, chromedriver).

Child processes get only what they need to run: never the Street View key, a database URL or
password, or anything else the user's shell happens to hold. Every `subprocess` and browser start
in the package takes its environment from `child_env`.
"""

from __future__ import annotations

import os
from typing import Mapping

# Names a program needs to find itself, its locale and a place for temporary files.
PASSED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR", "HOME", "USER", "LOGNAME",
          "DISPLAY", "XDG_RUNTIME_DIR")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: the PASSED names from ours (when set), plus EXTRA."""
    env = {k: os.environ[k] for k in PASSED if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(extra or {})
    return env
