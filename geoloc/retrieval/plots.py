"""`geoloc search --plot`: each query photo beside its k neighbours, as the original demo showed them.

A neighbour is framed green when it is at the consensus location, grey otherwise; its label gives the
rank, location, heading, capture month and cosine distance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from ..errors import InputError
from ..months import iso_month

TILE = 2.2  # inches per image


def check_path(out: Path) -> Path:
    """Refuse a wrong file name before any work is done."""
    out = Path(out)
    if out.suffix.lower() not in (".png",):
        raise InputError(f"--plot {out}: the file name must end in .png")
    return out


def _pixels(path: Path) -> np.ndarray:
    from ..imagefile import open_image

    try:
        return np.asarray(open_image(path))
    except (OSError, ValueError, InputError):
        return np.full((8, 8, 3), 200, np.uint8)  # a missing database file must not stop the picture


def plot_results(results: Sequence, out: Path) -> Path:
    """Write a PNG grid: one row per query (the photo, then its neighbours in rank order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    check_path(out)
    cols = 1 + max((len(r.neighbours) for r in results), default=0)
    fig, axes = plt.subplots(len(results), cols, figsize=(TILE * cols, TILE * 1.25 * len(results)), squeeze=False)
    for row, res in zip(axes, results):
        for ax in row:
            ax.axis("off")
        row[0].imshow(_pixels(res.image))
        pred = ""
        if res.consensus is not None:
            pred = f"\n-> loc {res.consensus.location_id}\n{res.consensus.lat:.5f}, {res.consensus.lng:.5f}"
        row[0].set_title(f"query: {res.image.name[:28]}{pred}", fontsize=8, color="navy", parse_math=False)
        for ax, n in zip(row[1:], res.neighbours):
            ax.imshow(_pixels(n.file))
            hit = res.consensus is not None and n.location_id == res.consensus.location_id
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("green" if hit else "lightgrey")
                spine.set_linewidth(3 if hit else 1)
            month = iso_month(n.capture_month)
            ax.set_title(f"#{n.rank} loc {n.location_id} h{n.heading}\n{month}  d={n.distance:.3f}", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
