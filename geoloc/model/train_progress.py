"""The text rendering of `geoloc.model.train`'s progress reports (tqdm bars and lines on stderr),
shared by `geoloc train` and `geoloc demo`."""

from __future__ import annotations

import sys


def whitening_line(check: dict) -> str:
    """One line for a run's whitening decision, e.g. 'whitening at 320px: val R@1 0.722 -> 0.774, kept'."""
    if "val_raw" not in check:
        return f"whitening: not fitted ({check.get('reason')})"
    before, after = check["val_raw"].get("recall@1"), check["val_whitened"].get("recall@1")
    verdict = "kept" if check["kept"] else f"not kept ({check.get('reason')})"
    where = f" at {check['size']}px" if "size" in check else ""  # runs recorded before the side was noted
    return f"whitening{where}: val R@1 {before:.3f} -> {after:.3f}, {verdict}"


def embed_size_line(check: dict) -> str:
    """One line for a run's inference side, e.g. 'inference side 320 (trained at 192): val R@1 0.828 whitened
    -> 0.867 whitened, kept' (each side's figure with its own whitening where that helped)."""
    head = f"inference side {check['embed_size']} (trained at {check['input_size']})"
    if "val_embed_size" not in check:
        return f"{head}: not tried ({check.get('reason')})"
    before, after = (f"{check[f'val_{key}'].get('recall@1'):.3f}"
                     + (" whitened" if check.get(f"whitened_{key}") else "") for key in ("input_size", "embed_size"))
    verdict = "kept" if check["kept"] else f"not kept ({check.get('reason')})"
    return f"{head}: val R@1 {before} -> {after}, {verdict}"


def choice_lines(hyperparams: dict | None) -> list[str]:
    """The lines of a finished run's choices after training (inference side, whitening), in that order."""
    hp = hyperparams or {}
    lines = [embed_size_line(hp["embed_size_check"])] if hp.get("embed_size_check") else []
    return lines + ([whitening_line(hp["whitening_check"])] if hp.get("whitening_check") else [])


class ProgressView:
    """Renders `geoloc.model.train`'s progress reports on stderr: a bar per epoch, a line per event."""

    def __init__(self):
        self.bar = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _line(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def __call__(self, kind: str, info: dict) -> None:
        from tqdm import tqdm

        if kind == "decoding":
            self._line(f"decoding {info['images']:,} {info['split']} images")
        elif kind == "plan":
            self._line(f"plan: {info['total_steps']} steps ({info['epochs']} epochs) at {info['images_per_s']:.1f} img/s"
                       f" to end in {info['seconds_left'] / 60:.1f} min (planned at step {info['planned_at_step']})")
        elif kind == "epoch":
            self.close()
            self.bar = tqdm(total=info["steps"], initial=info["done"], desc=f"epoch {info['epoch']}/{info['epochs']}",
                            unit="step", file=sys.stderr, dynamic_ncols=True)
        elif kind == "step" and self.bar is not None:
            self.bar.update(info["epoch_step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{info['loss']:.4f}", img_s=f"{info['images_per_s']:.1f}")
        elif kind == "epoch_end":
            self.close()
            loss = info["loss"] if info["loss"] is not None else float("nan")
            msg = f"epoch {info['epoch']}: loss {loss:.4f}  lr {info['lr']:.2e}"
            if "val_recall@1" in info:
                msg += "  val R@1/5/10 " + "/".join(f"{100 * info[f'val_recall@{k}']:.1f}" for k in (1, 5, 10))
            self._line(msg)
        elif kind == "embed_size":
            self._line(embed_size_line(info))
        elif kind == "whitening_fit":
            self._line(f"whitening: embedding {info['images']:,} {info['split']} images at {info['size']}px "
                       "to fit it")
        elif kind == "whitening":
            self._line(whitening_line(info))
        elif kind == "stopped":
            self.close()
            self._line(f"{info['reason']}: stopping")
