"""One trained model's weights at several input sides and with each whitening, side by side: Recall@1/5/10
and images/s.

    geoloc embed --model NAME      # once: the protocol's images are read with the model's embeddings
    .venv/bin/python benchmarks/embed_side.py --model NAME --sides 192,224,256,288

For each side, every image of the training split and of Validation v1 / Test v1 is embedded by the
model's raw best weights (best.weights.h5 in its run folder: the network before any whitening,
rebuilt at that side; no weight depends on it), two whitenings are fitted on the training split's
embeddings (geoloc.model.whitening): PCA's, and the learned one from the images' places as `geoloc
train` fits it; both splits are scored raw, PCA-whitened and learned-whitened under `geoloc
evaluate`'s protocol (newest image per place and heading as the query, exact
search, correct within 25 m). With --multiscale, a last row scores the sides together: each image's
raw descriptors at every side, L2-normalised, averaged and normalised again (multi-scale GeM, as
Radenovic et al. average scales), with both whitenings fitted on the averaged training descriptors.
Nothing is written to the database.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from geoloc.db.engine import begin  # noqa: E402
from geoloc.db.models import get_model  # noqa: E402
from geoloc.model.folders import WEIGHTS_FILE  # noqa: E402
from geoloc.model.net import build_model  # noqa: E402
from geoloc.model.registry import network_args  # noqa: E402
from geoloc.model.sampler import load_split  # noqa: E402
from geoloc.model.train_config import TrainConfig  # noqa: E402
from geoloc.model.whitening import fit_whitening, normalise  # noqa: E402
from geoloc.retrieval import evaluate as protocol  # noqa: E402
from geoloc.retrieval.embed import keras_batches  # noqa: E402

SPLITS = ("val", "test")
VERSION = "v1"
RECALL = (1, 5, 10)


def embed_side(network, side: int, paths: list[Path]) -> tuple[np.ndarray, float]:
    """(embeddings in the order of PATHS, images/s) of NETWORK at SIDE."""
    batches, skipped = keras_batches(network, side), []
    out = np.zeros((len(paths), int(network.output_shape[-1])), np.float32)
    start = time.perf_counter()
    for keys, vectors in batches(list(range(len(paths))), paths, 64, skipped):
        out[keys] = vectors
    if skipped:
        raise SystemExit(f"{skipped[0][1]}: {skipped[0][2]}")
    return out, len(paths) / (time.perf_counter() - start)


def recall(pv, vectors: np.ndarray) -> tuple[float, ...]:
    hits = protocol.numpy_hits(pv, vectors[pv.is_query], vectors[~pv.is_query], max(RECALL))
    outs = protocol.outcomes(hits, protocol.DEFAULT_CONSENSUS_K)
    found = protocol.recall_at([o.first_correct_rank for o in outs], RECALL)
    return tuple(found[n] for n in RECALL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model trained by geoloc train and embedded")
    ap.add_argument("--sides", default="192,224,256,288", help="comma-separated input sides")
    ap.add_argument("--multiscale", action="store_true", help="add a row: the sides' descriptors averaged")
    args = ap.parse_args()
    sides = [int(s) for s in args.sides.split(",")]

    with begin() as conn:
        row = get_model(conn, args.model)
        hp = row.hyperparams or {}
        pvs = {s: protocol.protocol_vectors(conn, row.id, row.dim, s, VERSION) for s in SPLITS}
        # the images the model was trained on (its run's recorded configuration), as `geoloc train` fits
        # its whitening on them
        run = TrainConfig.from_hyperparams(hp)
        train = load_split(conn, run.split, run.versions, run.include_queries)
        files = {}
        for s in SPLITS:
            split = load_split(conn, s, [VERSION], include_queries=True)
            files.update(zip(split.ids.tolist(), split.paths))
    weights = Path(hp["run_dir"]) / WEIGHTS_FILE
    print(f"model {row.name}: trained at {hp.get('input_size')} px, registered at {row.input_size} px; "
          f"{len(train)} training images; raw weights {weights}")
    print("| side | embed img/s | " + " | ".join(f"{s} R@1 / R@5 / R@10 raw | PCA | learned" for s in SPLITS)
          + " |")
    print("|---|---|" + "---|---|---|" * len(SPLITS))
    def row_of(label: str, fit: np.ndarray, split_vectors: dict[str, np.ndarray], rate: str) -> None:
        whitenings = (fit_whitening(fit), fit_whitening(fit, places=train.place))
        cells = []
        for s in SPLITS:
            vectors = split_vectors[s]
            for v in (vectors, *(w.apply(vectors) for w in whitenings)):
                cells.append(" / ".join(f"{x:.3f}" for x in recall(pvs[s], v)))
        print(f"| {label} | {rate} | " + " | ".join(cells) + " |", flush=True)

    summed: dict[str, np.ndarray] = {}
    for side in sides:
        # the raw network (no whitening layer) rebuilt at SIDE
        network = build_model(row.backbone, weights="none", **{**network_args(row), "input_size": side,
                                                               "whiten_dim": None})
        network.load_weights(weights)
        fit, _ = embed_side(network, side, [Path(p) for p in train.paths])
        split_vectors, rates = {}, []
        for s in SPLITS:
            split_vectors[s], rate = embed_side(network, side, [Path(files[int(i)]) for i in pvs[s].ids])
            rates.append(rate)
        row_of(str(side), fit, split_vectors, f"{np.mean(rates):.0f}")
        if args.multiscale:
            for key, v in (("fit", fit), *split_vectors.items()):
                summed[key] = summed.get(key, 0) + normalise(v)
    if args.multiscale:
        row_of("+".join(map(str, sides)), normalise(summed.pop("fit")),
               {s: normalise(v) for s, v in summed.items()}, "-")


if __name__ == "__main__":
    main()
