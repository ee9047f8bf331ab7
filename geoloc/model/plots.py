"""The training curve written beside the weights: loss and validation recall per epoch."""

from __future__ import annotations

from pathlib import Path


def training_curve(history: list[dict], path: Path, title: str = "") -> Path:
    """PNG with the mean training loss (left) and validation Recall@1/5/10 (right) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_rec) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h.get("loss") for h in history], marker="o")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("multi-similarity loss (train)")
    for k in (1, 5, 10):
        values = [h.get(f"val_recall@{k}") for h in history]
        if any(v is not None for v in values):
            ax_rec.plot(epochs, [float("nan") if v is None else 100 * v for v in values], marker="o",
                        label=f"Recall@{k}")
    baseline = next((h.get("thumbnail_val_recall@1") for h in history
                     if h.get("thumbnail_val_recall@1") is not None), None)
    if baseline is not None:
        ax_rec.axhline(100 * baseline, color="grey", linestyle="--", label="16x16 thumbnails R@1")
    ax_rec.set_xlabel("epoch")
    ax_rec.set_ylabel("validation recall (%)")
    if ax_rec.get_legend_handles_labels()[0]:
        ax_rec.legend(loc="lower right")
    for ax in (ax_loss, ax_rec):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
