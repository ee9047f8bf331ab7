"""Re-ranking a model's nearest database images by local-feature geometry.

A global descriptor (GeM) says that two photos look alike; it cannot tell whether they show the same
facades from the same place. Geometric verification can: SIFT keypoints of the query and of each of its
top candidates are matched and MAGSAC fits a fundamental matrix to the matches; its inliers count the
matches that one rigid scene explains. The descriptors are compared as RootSIFT (Arandjelovic and
Zisserman, CVPR 2012: each L1-normalised and square-rooted, so their dot product is the Hellinger
kernel of the gradient histograms), and a match is kept only when it passes Lowe's ratio test and the
two keypoints are each other's nearest neighbours, which leaves far fewer chance inliers between
different places. The top candidates are then ordered by

    cosine similarity + weight x inliers

so a candidate with many inliers moves up, and the model's similarity still orders candidates whose
inlier counts are alike. The default weight (10 inliers are worth 0.1 of similarity) and the number of
candidates were chosen on the validation split (benchmarks/README.md, "Re-ranking"). OpenCV finds the
features and fits the geometry; every image is opened through geoloc.imagefile's checks and limits.
`geoloc search --rerank` and `geoloc evaluate --rerank` use it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

from ..errors import InputError
from ..imagefile import open_image

DEFAULT_TOP = 10  # candidates re-ranked per query
MAX_TOP = 100
DEFAULT_WEIGHT = 0.01  # similarity + DEFAULT_WEIGHT x inliers
SIDE = 448  # images are resized to SIDE x SIDE pixels before SIFT (the 224 px crops, doubled)
FEATURES = 1000  # SIFT keypoints kept per image
RATIO = 0.8  # Lowe's ratio test: best match closer than RATIO x the second best (RootSIFT distances)
THRESHOLD_PX = 6.0  # MAGSAC's inlier threshold, in pixels at SIDE
CONFIDENCE = 0.999
MAX_ITERATIONS = 2000
MIN_MATCHES = 8  # fewer matches than a fundamental matrix needs count 0 inliers
CACHED_IMAGES = 4096  # features kept in memory (about 130 kB per image)

C = TypeVar("C")


@dataclass(frozen=True)
class RerankParams:
    """How many of the nearest candidates are re-ranked, and the weight of an inlier."""

    top: int = DEFAULT_TOP
    weight: float = DEFAULT_WEIGHT

    def problems(self) -> list[tuple[str, object, str]]:
        """(parameter, value, rule) of every parameter out of range; empty when both are fine."""
        out = []
        if not 1 <= self.top <= MAX_TOP:
            out.append(("top", self.top, f"must be between 1 and {MAX_TOP}"))
        if not (np.isfinite(self.weight) and self.weight >= 0):
            out.append(("weight", self.weight, "must be a number >= 0"))
        return out

    def to_json(self) -> dict:
        return {"top": self.top, "weight": self.weight, "side": SIDE, "features": FEATURES, "descriptor": "RootSIFT",
                "matches": "mutual nearest", "ratio": RATIO, "threshold_px": THRESHOLD_PX}


def fetch_count(k: int, params: RerankParams | None) -> int:
    """How many nearest images a search keeping K fetches: with PARAMS, enough to re-rank PARAMS.top."""
    return max(k, params.top) if params is not None else k


def check_params(params: RerankParams | None) -> None:
    """InputError naming the first re-ranking option (--rerank-top, --rerank-weight) out of range."""
    for name, value, rule in (params.problems() if params is not None else []):
        raise InputError(f"--rerank-{name} {value}: {rule}")


Features = tuple[np.ndarray, "np.ndarray | None"]  # keypoint positions (n, 2), descriptors (n, 128) as bytes


class Verifier:
    """SIFT features of images (those of files kept for the last CACHED_IMAGES files) and the inliers of
    a pair."""

    def __init__(self, cached: int = CACHED_IMAGES):
        import cv2

        self.cv2 = cv2
        self.sift = cv2.SIFT_create(nfeatures=FEATURES)
        self.cached = cached
        self.cache: OrderedDict[Path, Features] = OrderedDict()

    def features(self, source: Path | bytes, name: str | None = None) -> Features:
        """The features of the image file SOURCE (cached) or of the encoded image bytes SOURCE (an upload,
        called NAME in errors); InputError naming it when it is not a readable image."""
        if isinstance(source, (bytes, bytearray)):
            return self._compute(open_image(source, name, mode="L"))
        path = Path(source)
        if path in self.cache:
            self.cache.move_to_end(path)
            return self.cache[path]
        found = self.cache[path] = self._compute(open_image(path, mode="L"))
        if len(self.cache) > self.cached:
            self.cache.popitem(last=False)
        return found

    def _compute(self, image) -> Features:
        gray = self.cv2.resize(np.asarray(image), (SIDE, SIDE), interpolation=self.cv2.INTER_CUBIC)
        keypoints, descriptors = self.sift.detectAndCompute(gray, None)
        # OpenCV's SIFT descriptors are whole numbers from 0 to 255 held as floats: kept as bytes (a
        # quarter of the memory), turned into RootSIFT when matched
        return (np.float32([k.pt for k in keypoints]).reshape(-1, 2),
                None if descriptors is None else descriptors.astype(np.uint8))

    def inliers(self, a: Path | Features, b: Path | Features) -> int:
        """Matches between the images A and B (files, or their features) that one fundamental matrix
        explains."""
        pa, da = a if isinstance(a, tuple) else self.features(a)
        pb, db = b if isinstance(b, tuple) else self.features(b)
        if da is None or db is None or len(da) < 2 or len(db) < 2:
            return 0
        ia, ib = matches(root_sift(da), root_sift(db))
        if len(ia) < MIN_MATCHES:
            return 0
        try:
            _, mask = self.cv2.findFundamentalMat(pa[ia], pb[ib], self.cv2.USAC_MAGSAC, THRESHOLD_PX, CONFIDENCE,
                                                  MAX_ITERATIONS)
        except self.cv2.error:  # a degenerate set of matches (e.g. all on one line)
            return 0
        return 0 if mask is None else int(mask.sum())


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """SIFT DESCRIPTORS (n, 128) as RootSIFT: L1-normalised and square-rooted, so each has unit length."""
    d = descriptors.astype(np.float32)
    return np.sqrt(d / np.maximum(d.sum(axis=1, keepdims=True), 1e-12))


def matches(da: np.ndarray, db: np.ndarray, ratio: float = RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Indices into DA and into DB (unit-length descriptors, at least two each) of the pairs that are
    each other's nearest neighbours and pass Lowe's ratio test (nearest closer than RATIO x the second)."""
    sim = da @ db.T  # unit vectors: squared distance = 2 - 2 x similarity
    rows = np.arange(len(da))
    nearest, back = sim.argmax(axis=1), sim.argmax(axis=0)
    best = sim[rows, nearest]
    sim[rows, nearest] = -1.0  # below any similarity: the row's maximum is now its second nearest
    d1, d2 = (np.sqrt(np.maximum(2.0 - 2.0 * s, 0.0)) for s in (best, sim.max(axis=1)))
    ia = np.flatnonzero((d1 < ratio * d2) & (back[nearest] == rows))
    return ia, nearest[ia]


def order(similarities: Sequence[float], inliers: Sequence[int], weight: float) -> list[int]:
    """Indices of the candidates by similarity + WEIGHT x inliers, highest first; equal scores keep the
    given order (so weight 0 is the model's own order)."""
    score = np.asarray(similarities, np.float64) + weight * np.asarray(inliers, np.float64)
    return np.argsort(-score, kind="stable").tolist()


def rerank_candidates(query: Path | Features, candidates: list[C], file_of: Callable[[C], Path],
                      similarity_of: Callable[[C], float], params: RerankParams,
                      verifier: Verifier) -> list[tuple[C, int | None]]:
    """CANDIDATES (nearest first) with the first PARAMS.top re-ordered by similarity + weight x their
    inliers with the QUERY (a file or its features, Verifier.features); each with its inliers (None for
    the candidates after the top)."""
    top = candidates[:params.top]
    query = query if isinstance(query, tuple) else verifier.features(query)
    counts = [verifier.inliers(query, file_of(c)) for c in top]
    ranked = [(top[i], counts[i]) for i in order([similarity_of(c) for c in top], counts, params.weight)]
    return ranked + [(c, None) for c in candidates[params.top:]]
