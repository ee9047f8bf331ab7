"""What the web page asks the database: searches, models, areas, evaluation runs and image files.

One `Service` per worker process: it holds a pooled, read-only engine and the models it has loaded
(each loaded once, then kept warm). Searches run the very statement of `geoloc search`
(geoloc.retrieval.search.knn on geoloc/sql/search/knn.sql) with the same options and region filter; for a
model with cell heads, the hybrid statement (geoloc.retrieval.hybrid.knn_cells on
geoloc/sql/search/knn_cells.sql), and the response adds the top cells with their polygons from PostGIS.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from PIL import Image

from .. import config
from ..db import sqlfiles
from ..db.engine import get_engine
from ..errors import DatabaseUnavailable, InputError, NotFound
from ..imagefile import check_file, image_file, open_image
from ..retrieval import hybrid as H
from ..retrieval import rerank as R
from ..retrieval import search as S
from ..retrieval.cell_maps import cells_with_polygons
from ..retrieval.consensus import consensus
from ..splits import SPLITS
from .embedder import QueryEmbedder, load_query_embedder
from .upload import check_photo

THUMB_SIZES = (96, 160, 320)
DEFAULT_THUMB = 160


def database_url() -> str:
    """The read-only URL when the configuration offers one, else the configured database."""
    return getattr(config, "read_only_url", lambda: None)() or config.database_target().url


def _geojson(rows, geometry: str = "geometry") -> dict:
    features = []
    for r in rows:
        props = {k: v for k, v in r._mapping.items() if k != geometry}
        features.append({"type": "Feature", "geometry": json.loads(r._mapping[geometry]), "properties": props})
    return {"type": "FeatureCollection", "features": features}


def _jsonable(row) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()}


class Service:
    def __init__(self, url: str | None = None, model: str | None = None):
        self.url = url or database_url()
        self.engine = get_engine(self.url).execution_options(postgresql_readonly=True)
        self._models: dict[str, QueryEmbedder] = {}
        self._lock = threading.Lock()
        self.default_model = model or self.best_model()

    # ---------------------------------------------------------------------------- plumbing

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A read-only transaction from the pool; DatabaseUnavailable when the server does not answer."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseUnavailable(f"cannot reach the database: {reason}") from None

    def embedder(self, name: str | None) -> QueryEmbedder:
        """The model NAME (default: the server's), loaded on first use and kept for the process's life."""
        name = name or self.default_model
        with self._lock:
            if name not in self._models:
                with self.begin() as conn:
                    emb = load_query_embedder(conn, name)
                    S.require_embeddings(conn, emb.name, emb.model_id)
                self._models[name] = emb
            return self._models[name]

    def require_model(self, name: str) -> None:
        """NotFound/InputError unless NAME is registered, ready and has embeddings (nothing is loaded)."""
        from ..db.models import get_model

        with self.begin() as conn:
            row = get_model(conn, name)
            if row.status != "ready":
                raise InputError(f"model '{name}' is not ready (status {row.status})",
                                 hint=f"finish its training with 'geoloc train --name {name} --resume'")
            S.require_embeddings(conn, row.name, row.id)

    def warm(self) -> None:
        """Load the default model now, so the first visitor does not wait for it."""
        self.embedder(None)

    # ---------------------------------------------------------------------------- searching

    def search(self, data: bytes, name: str, model: str | None = None, k: int = S.DEFAULT_K,
               near: str | None = None, within: float | None = None, area: str | None = None,
               split: str | None = None, version: str | None = None, exclude_image: int | None = None,
               top_cells: int = H.DEFAULT_TOP_CELLS, cell_level: int | None = None,
               rerank: bool = False) -> dict:
        """Where was the photo DATA taken? The JSON of `geoloc search --json` for one image.

        For a model with cell heads it adds `cells` (the most probable cells, best first, each with
        its polygon as GeoJSON), `top_cells` and `hybrid`, like `geoloc search --json` with cells;
        TOP_CELLS > 0 restricts the neighbours to that many best cells of CELL_LEVEL (default finest).
        RERANK re-ranks the nearest images by their geometry with the photo, as `geoloc search --rerank`
        does with its defaults (with cell heads: the hybrid's neighbours, and its prediction from them).
        """
        if not 0 <= top_cells <= H.MAX_CELLS:
            raise InputError(f"top_cells {top_cells}: must be between 0 (no restriction) and {H.MAX_CELLS}")
        if not 1 <= k <= S.MAX_K:
            raise InputError(f"-k {k}: must be between 1 and {S.MAX_K}")
        if split is not None and split not in SPLITS:
            raise InputError(f"--split '{split}': must be one of {', '.join(SPLITS)}")
        region = S.make_region(near, within, area)
        check_photo(data, name)
        emb = self.embedder(model)
        vector = emb.embed(data)
        params = R.RerankParams() if rerank else None
        fetch = R.fetch_count(k, params) + (1 if exclude_image is not None else 0)  # the query may be among them
        cells = None
        with self.begin() as conn:
            S.require_area(conn, region.area)
            with_cells = H.model_has_cells(conn, emb.model_id)
            if not with_cells and (top_cells or cell_level is not None):
                raise InputError(f"model '{emb.name}' has no cell heads: top_cells and cell_level need them",
                                 hint="choose a model trained with 'geoloc train --cells PARTITION'")
            S.set_search_options(conn, max(S.DEFAULT_EF_SEARCH, fetch))
            if with_cells:
                found_cells, found = H.knn_cells(conn, emb.model_id, emb.dim, vector, k=fetch,
                                                 top_cells=top_cells, show_cells=H.DEFAULT_SHOW_CELLS, region=region,
                                                 split=split, version=version, cell_level=cell_level)
                cells = cells_with_polygons(conn, found_cells)
            else:
                found = S.knn(conn, emb.model_id, emb.dim, vector, fetch, region, split, version)
        neighbours = [n for n in found if n.image_id != exclude_image]
        if params:
            verifier = R.Verifier()  # one per request: its SIFT detector is not shared between threads
            query = verifier.features(data, name)
            for n in neighbours[:params.top]:  # a page names a database image by id, never by its path
                try:
                    verifier.features(n.file)
                except InputError:
                    raise NotFound(f"image {n.image_id}: its file is missing or unreadable") from None
            neighbours = S.rerank_neighbours(query, neighbours, params, verifier)
        neighbours = [dataclasses.replace(n, rank=i + 1) for i, n in enumerate(neighbours[:k])]
        best = neighbours[0] if neighbours else None
        if cells is None:
            return S.QueryResult(Path(name), neighbours, best, consensus(neighbours), region).to_json()
        result = H.HybridResult(Path(name), neighbours, best, consensus(neighbours), region, found_cells, top_cells,
                                H.hybrid_prediction(found_cells, neighbours, top_cells > 0))
        return {**result.to_json(), "cells": cells}

    def search_image(self, image_id: int, **options) -> dict:
        """Search with a database image (left out of its own neighbours); adds 'query': where it really is."""
        info = self.image_info(image_id)
        data = self.image_path(image_id).read_bytes()
        result = self.search(data, f"image {image_id}", exclude_image=image_id, **options)
        return {**result, "query": info}

    # ---------------------------------------------------------------------------- lookups

    def models(self) -> list[dict]:
        with self.begin() as conn:
            rows = conn.execute(sqlfiles.text("serve/models.sql")).all()
        return [{**_jsonable(r), "default": r.name == self.default_model} for r in rows]

    def best_model(self) -> str:
        with self.begin() as conn:
            row = conn.execute(sqlfiles.text("serve/models.sql")).first()
        if row is None:
            raise NotFound("no ready model with embeddings to search with",
                           hint="train one with 'geoloc train' and embed the images with 'geoloc embed --model NAME' "
                                "(or 'geoloc embed --model thumbnail-16' for the baseline)")
        return row.name

    def areas(self) -> dict:
        with self.begin() as conn:
            return _geojson(conn.execute(sqlfiles.text("serve/areas.sql")).all())

    def image_info(self, image_id: int) -> dict:
        with self.begin() as conn:
            row = conn.execute(sqlfiles.text("serve/image_info.sql"), {"image_id": image_id}).first()
        if row is None:
            raise NotFound(f"image {image_id} not found")
        return _jsonable(row)

    def random_query(self, split: str) -> dict:
        if split not in SPLITS:
            raise InputError(f"--split '{split}': must be one of {', '.join(SPLITS)}")
        with self.begin() as conn:
            image_id = conn.execute(sqlfiles.text("serve/random_query.sql"), {"split": split}).scalar()
        if image_id is None:
            raise NotFound(f"split {split} has no query images", hint="import them with 'geoloc ingest images DIR'")
        return self.image_info(image_id)

    def location_images(self, location_id: int) -> list[dict]:
        with self.begin() as conn:
            rows = conn.execute(sqlfiles.text("serve/location_images.sql"), {"location_id": location_id}).all()
        if not rows:
            raise NotFound(f"location {location_id} has no images")
        return [_jsonable(r) for r in rows]

    def eval_runs(self) -> list[dict]:
        with self.begin() as conn:
            return [_jsonable(r) for r in conn.execute(sqlfiles.text("serve/eval_runs.sql")).all()]

    def eval_predictions(self, run_id: int) -> dict:
        with self.begin() as conn:
            if not conn.execute(sqlfiles.text("serve/eval_run_exists.sql"), {"run_id": run_id}).scalar():
                raise NotFound(f"evaluation run {run_id} not found", hint="see GET /api/eval-runs")
            rows = conn.execute(sqlfiles.text("serve/eval_predictions.sql"), {"run_id": run_id}).all()
        return _geojson(rows)

    # ---------------------------------------------------------------------------- image files

    def image_path(self, image_id: int) -> Path:
        """The file the images table names for IMAGE_ID (a regular file, checked); NotFound otherwise."""
        with self.begin() as conn:
            row = conn.execute(sqlfiles.text("serve/image_file.sql"), {"image_id": image_id}).first()
        if row is None:
            raise NotFound(f"image {image_id} not found")
        try:
            return check_file(image_file(row))
        except InputError:
            raise NotFound(f"image {image_id}: its file is missing or unreadable") from None

    def thumbnail(self, image_id: int, size: int = DEFAULT_THUMB) -> bytes:
        """A JPEG of at most SIZE x SIZE pixels of a database image."""
        if size not in THUMB_SIZES:
            raise InputError(f"size {size}: must be one of {', '.join(map(str, THUMB_SIZES))}")
        path = self.image_path(image_id)
        try:
            im = open_image(path, name=f"image {image_id}")
        except InputError:
            raise NotFound(f"image {image_id}: its file is not a readable image") from None
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=82)
        return buf.getvalue()
