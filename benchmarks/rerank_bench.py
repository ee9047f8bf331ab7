"""Re-ranking a model's nearest database images by local-feature geometry, beside its own ranking.

    geoloc embed --model NAME      # once: the protocol's images are read with the model's embeddings
    .venv/bin/python benchmarks/rerank_bench.py --model NAME --split val
    .venv/bin/python benchmarks/rerank_bench.py --model NAME --split val --distractors test,train

Per query of `geoloc evaluate`'s protocol (Validation or Test v1: the newest image per place and heading
is the query, correct within 25 m; --distractors add every image of other splits to the database, as
`geoloc evaluate --distractors` does) the model's stored embeddings give its --top nearest database images
by exact search. For each such pair OpenCV's SIFT finds keypoints in both images (resized to --side),
Lowe's ratio test keeps the distinctive matches, and MAGSAC counts the inliers of a fundamental matrix:
how many of the matches one rigid scene explains. The candidates are then ordered by cosine similarity +
w x inliers for each w of --weights (w = 0 is the model's own order). Printed: Recall@1/5/10 per w, the
queries whose top-1 turned right or wrong against w = 0, and the time the features and matches took.
Nothing is written to the database. OpenCV comes with the bench extra (`pip install -e '.[bench]'`);
geoloc itself does not use it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from geoloc.db.engine import begin
from geoloc.db.models import get_model
from geoloc.model.sampler import load_split
from geoloc.retrieval import evaluate as protocol

VERSION = "v1"
RECALL = (1, 5, 10)


class Geometry:
    """SIFT features of image files (each computed once) and the inlier count of a pair."""

    def __init__(self, side: int, features: int, ratio: float, threshold_px: float):
        import cv2

        cv2.setNumThreads(1)
        self.cv2, self.side, self.ratio, self.threshold = cv2, side, ratio, threshold_px
        self.sift = cv2.SIFT_create(nfeatures=features)
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)
        self.cache: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def features(self, path: str) -> tuple[np.ndarray, np.ndarray | None]:
        if path not in self.cache:
            cv2 = self.cv2
            gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise SystemExit(f"{path}: not readable as an image")
            gray = cv2.resize(gray, (self.side, self.side), interpolation=cv2.INTER_CUBIC)
            keypoints, descriptors = self.sift.detectAndCompute(gray, None)
            self.cache[path] = (np.float32([k.pt for k in keypoints]).reshape(-1, 2), descriptors)
        return self.cache[path]

    def inliers(self, a: str, b: str) -> int:
        """Matches of A and B that one fundamental matrix explains (0 when fewer than 8 matches)."""
        pa, da = self.features(a)
        pb, db = self.features(b)
        if da is None or db is None or len(da) < 2 or len(db) < 2:
            return 0
        good = [m[0] for m in self.matcher.knnMatch(da, db, k=2)
                if len(m) == 2 and m[0].distance < self.ratio * m[1].distance]
        if len(good) < 8:
            return 0
        src = pa[[m.queryIdx for m in good]]
        dst = pb[[m.trainIdx for m in good]]
        try:
            _, mask = self.cv2.findFundamentalMat(src, dst, self.cv2.USAC_MAGSAC, self.threshold, 0.999, 2000)
        except self.cv2.error:  # a degenerate set of matches
            return 0
        return 0 if mask is None else int(mask.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model whose embeddings of the splits exist")
    ap.add_argument("--split", default="val", choices=("val", "test"), help="the split whose queries are searched")
    ap.add_argument("--distractors", default="", help="comma-separated splits added to the database")
    ap.add_argument("--top", type=int, default=10, help="candidates re-ranked per query")
    ap.add_argument("--weights", default="0,0.001,0.002,0.005,0.01",
                    help="comma-separated w of similarity + w x inliers")
    ap.add_argument("--side", type=int, default=448, help="side the images are resized to for SIFT")
    ap.add_argument("--features", type=int, default=1000, help="SIFT keypoints kept per image")
    ap.add_argument("--ratio", type=float, default=0.8, help="Lowe's ratio test")
    ap.add_argument("--threshold", type=float, default=6.0, help="MAGSAC inlier threshold in pixels at --side")
    args = ap.parse_args()
    distractors = tuple(s for s in args.distractors.split(",") if s)
    weights = [float(w) for w in args.weights.split(",")]

    with begin() as conn:
        row = get_model(conn, args.model)
        pv = protocol.protocol_vectors(conn, row.id, row.dim, args.split, VERSION, distractors)
        files = {}
        for s in (args.split, *distractors):
            images = load_split(conn, s, [VERSION], include_queries=True)
            files.update(zip(images.ids.tolist(), images.paths))
    # the model's own ranking, exactly as `geoloc evaluate --post` searches: per query its top hits, in order
    hits = protocol.numpy_hits(pv, pv.vectors[pv.is_query], pv.vectors[~pv.is_query], args.top)
    queries = int(pv.is_query.sum())
    shape = (queries, len(hits) // queries)
    top_sims = 1.0 - np.array([h.distance for h in hits]).reshape(shape)
    correct = (np.array([h.error_m for h in hits]) <= protocol.CORRECT_M).reshape(shape)
    scope = f"split {args.split} {VERSION}" + (f" + distractors {', '.join(distractors)}" if distractors else "")
    print(f"model {row.name}, {scope}: {queries} queries, {int((~pv.is_query).sum())} database images, "
          f"top {args.top} re-ranked")

    geometry = Geometry(args.side, args.features, args.ratio, args.threshold)
    start = time.perf_counter()
    inliers = np.array([geometry.inliers(files[h.query_image_id], files[h.image_id]) for h in hits]).reshape(shape)
    seconds = time.perf_counter() - start
    print(f"{inliers.size} pairs in {seconds:.0f} s ({seconds / queries:.2f} s per query, one core); median "
          f"inliers of correct candidates {np.median(inliers[correct]):.0f}, "
          f"of wrong ones {np.median(inliers[~correct]):.0f}")

    base = correct[:, 0]
    print(f"{'w':>8}  {'R@1':>6}  {'R@5':>6}  {'R@10':>6}  top-1 turned right / wrong")
    for w in weights:
        order = np.argsort(-(top_sims + w * inliers), axis=1, kind="stable")
        ranked = np.take_along_axis(correct, order, axis=1)
        figures = "  ".join(f"{ranked[:, :n].any(axis=1).mean():6.3f}" for n in RECALL)
        print(f"{w:8g}  {figures}  {int((ranked[:, 0] & ~base).sum())} / {int((base & ~ranked[:, 0]).sum())}")


if __name__ == "__main__":
    main()
