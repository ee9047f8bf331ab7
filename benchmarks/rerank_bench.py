"""Re-ranking a model's nearest database images by local-feature geometry, for several weights.

    geoloc embed --model NAME      # once: the protocol's images are read with the model's embeddings
    .venv/bin/python benchmarks/rerank_bench.py --model NAME --split val
    .venv/bin/python benchmarks/rerank_bench.py --model NAME --split val --distractors test,train

Per query of `geoloc evaluate`'s protocol (Validation or Test v1: the newest image per place and heading
is the query, correct within 25 m; --distractors add every image of other splits to the database, as
`geoloc evaluate --distractors` does) the model's stored embeddings give its --top nearest database images
by exact search. For each such pair geoloc.retrieval.rerank counts the SIFT matches that one rigid scene
explains (MAGSAC inliers of a fundamental matrix), as `geoloc evaluate --rerank` does; the candidates are
then ordered by cosine similarity + w x inliers for each w of --weights (w = 0 is the model's own order),
the inliers computed once for all w. Printed: Recall@1/5/10 per w, the queries whose top-1 turned right
or wrong against w = 0, and the time the features and matches took. Nothing is written to the database;
this is where the library's default weight (rerank.DEFAULT_WEIGHT) is chosen, on the validation split.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from geoloc.db.engine import begin
from geoloc.db.models import get_model
from geoloc.retrieval import evaluate as protocol, rerank

VERSION = "v1"
RECALL = (1, 5, 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model whose embeddings of the splits exist")
    ap.add_argument("--split", default="val", choices=("val", "test"), help="the split whose queries are searched")
    ap.add_argument("--distractors", default="", help="comma-separated splits added to the database")
    ap.add_argument("--top", type=int, default=rerank.DEFAULT_TOP, help="candidates re-ranked per query")
    ap.add_argument("--weights", default="0,0.002,0.005,0.007,0.01,0.015,0.02",
                    help="comma-separated w of similarity + w x inliers")
    args = ap.parse_args()
    distractors = tuple(s for s in args.distractors.split(",") if s)
    weights = [float(w) for w in args.weights.split(",")]

    with begin() as conn:
        row = get_model(conn, args.model)
        pv = protocol.protocol_vectors(conn, row.id, row.dim, args.split, VERSION, distractors)
        files = protocol.image_files(conn, pv.ids.tolist())
    # the model's own ranking, exactly as `geoloc evaluate --post` searches: per query its top hits, in order
    hits = protocol.numpy_hits(pv, pv.vectors[pv.is_query], pv.vectors[~pv.is_query], args.top)
    queries = int(pv.is_query.sum())
    shape = (queries, len(hits) // queries)
    top_sims = 1.0 - np.array([h.distance for h in hits]).reshape(shape)
    correct = (np.array([h.error_m for h in hits]) <= protocol.CORRECT_M).reshape(shape)
    scope = f"split {args.split} {VERSION}" + (f" + distractors {', '.join(distractors)}" if distractors else "")
    print(f"model {row.name}, {scope}: {queries} queries, {int((~pv.is_query).sum())} database images, "
          f"top {args.top} re-ranked")

    verifier = rerank.Verifier()
    start = time.perf_counter()
    inliers = np.array([verifier.inliers(files[h.query_image_id], files[h.image_id]) for h in hits]).reshape(shape)
    seconds = time.perf_counter() - start
    print(f"{inliers.size} pairs in {seconds:.0f} s ({seconds / queries:.2f} s per query); median "
          f"inliers of correct candidates {np.median(inliers[correct]):.0f}, "
          f"of wrong ones {np.median(inliers[~correct]):.0f}")

    base = correct[:, 0]
    print(f"{'w':>8}  {'R@1':>6}  {'R@5':>6}  {'R@10':>6}  top-1 turned right / wrong")
    for w in weights:
        order = np.array([rerank.order(s, i, w) for s, i in zip(top_sims, inliers)])
        ranked = np.take_along_axis(correct, order, axis=1)
        figures = "  ".join(f"{ranked[:, :n].any(axis=1).mean():6.3f}" for n in RECALL)
        print(f"{w:8g}  {figures}  {int((ranked[:, 0] & ~base).sum())} / {int((base & ~ranked[:, 0]).sum())}")


if __name__ == "__main__":
    main()
