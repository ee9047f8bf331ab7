"""The FastAPI application: the page, its static files and the JSON API (documented at /docs)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..errors import DatabaseUnavailable, GeolocError, InputError, NotFound
from ..splits import SPLITS
from ..retrieval.hybrid import DEFAULT_TOP_CELLS, MAX_CELLS
from ..retrieval.rerank import DEFAULT_TOP as RERANK_TOP
from ..retrieval.search import DEFAULT_K, MAX_K, NEAR_EXAMPLE
from .service import DEFAULT_THUMB, Service
from .upload import BODY_LIMIT, FILE_FIELD, BodyLimit, UploadError, read_upload

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
Split = Literal[SPLITS]


def static_files() -> dict[str, Path]:
    """Every file the server may send under /static/, by URL name: the page's own and Leaflet's.

    The table is built once from the two folders; a request's path is only ever a key into it.
    """
    import xstatic.pkg.leaflet as leaflet

    files = {p.name: p for p in STATIC.iterdir() if p.suffix in MEDIA_TYPES}
    base = Path(leaflet.BASE_DIR)
    for p in base.rglob("*"):
        if p.is_file() and p.suffix in (".js", ".css", ".png", ".svg"):
            files[f"leaflet/{p.relative_to(base).as_posix()}"] = p
    return files


def _status(exc: GeolocError) -> int:
    if isinstance(exc, UploadError):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, DatabaseUnavailable):
        return 503
    return 422 if isinstance(exc, InputError) else 400


def _error(status: int, message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GeolocError)
    async def geoloc_error(request: Request, exc: GeolocError):
        return _error(_status(exc), str(exc), exc.hint)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return _error(422, f"{where or 'request'}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, "internal error (see the server's log)")


SEARCH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FILE_FIELD],
    "properties": {FILE_FIELD: {"type": "string", "format": "binary",
                                "description": "The photo: JPEG, PNG or WebP"}}}}}}}


CELLS_DOC = """
For a model with cell heads (`geoloc train --cells`) the JSON also has:

- `cells`: the most probable geo-cells, best first: `rank`, `cell_id`, `level`, `h3`, `probability`
  (hierarchical, over the cells of the chosen level: the list sums to at most 1), `lat`/`lng` (the
  mean position of the cell's training images), `images` (its training images) and `geometry`, the
  cell's polygon as a GeoJSON MultiPolygon from PostGIS (the map draws it shaded by probability);
- `top_cells`: how many best cells restricted the neighbours (0: none, the default);
- `hybrid`: the hybrid prediction (`lat`, `lng`, `location_id`, `source`).
"""
TOP_CELLS_HELP = "Model with cell heads: neighbours only from the N most probable cells (0: anywhere)"
CELL_LEVEL_HELP = "Model with cell heads: the partition level of the cells (0 = coarsest) [the finest]"
RERANK_HELP = (f"Re-rank the nearest {RERANK_TOP} images by SIFT geometry with the photo (under a second more); "
               "each re-ranked neighbour then has its inliers")


def create_app(model: str | None = None, url: str | None = None, warm: bool = True) -> FastAPI:
    """The web application over the configured database (URL), searching with MODEL by default.

    MODEL defaults to the best-validated ready model with embeddings; WARM loads it before the first
    request. Raises NotFound when there is no model to search with.
    """
    service = Service(url, model)
    if warm:
        service.warm()
    app = FastAPI(title="geoloc", version="0.1.0",
                  description="Where was this photo taken? Nearest database images by one SQL query "
                              "(PostgreSQL + PostGIS + pgvector), the same search as `geoloc search`.")
    app.state.service = service
    app.add_middleware(BodyLimit, limit=BODY_LIMIT)
    _add_error_handlers(app)
    files = static_files()

    @app.get("/", include_in_schema=False)
    def index():
        return RedirectResponse("/static/index.html")

    @app.get("/eval", include_in_schema=False)
    def eval_page():
        return RedirectResponse("/static/eval.html")

    @app.get("/static/{name:path}", include_in_schema=False)
    def static(name: str):
        path = files.get(name)
        if path is None:
            raise NotFound(f"/static/{name}: no such file")
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix), headers={"Cache-Control": "no-cache"})

    @app.post("/api/search", tags=["search"], openapi_extra=SEARCH_BODY,
              summary="Where was this photo taken? (multipart upload, field 'file')",
              description="The same JSON as one element of `geoloc search --json`: best match, consensus, "
                          "neighbours.\n" + CELLS_DOC)
    async def search(request: Request,
                     model: str | None = Query(None, description="Registered model (default: the server's)"),
                     k: int = Query(DEFAULT_K, ge=1, le=MAX_K, description="How many nearest images"),
                     near: str | None = Query(None, description=f"LAT,LNG, e.g. {NEAR_EXAMPLE} (with within)"),
                     within: float | None = Query(None, description="Radius around near, in metres"),
                     area: str | None = Query(None, description="Only images inside this area"),
                     split: Split | None = Query(None), version: str | None = Query(None),
                     top_cells: int = Query(DEFAULT_TOP_CELLS, ge=0, le=MAX_CELLS, description=TOP_CELLS_HELP),
                     cell_level: int | None = Query(None, ge=0, description=CELL_LEVEL_HELP),
                     rerank: bool = Query(False, description=RERANK_HELP)):
        name, data = await read_upload(request)
        return await run_in_threadpool(service.search, data, name, model=model, k=k, near=near, within=within,
                                       area=area, split=split, version=version, top_cells=top_cells,
                                       cell_level=cell_level, rerank=rerank)

    @app.get("/api/images/{image_id}/search", tags=["search"],
             summary="Search with a database image (left out of its own neighbours)",
             description="The search JSON plus 'query': where the image really was taken.\n" + CELLS_DOC)
    def search_image(image_id: int = PathParam(ge=1), model: str | None = None,
                     k: int = Query(DEFAULT_K, ge=1, le=MAX_K), near: str | None = None,
                     within: float | None = None, area: str | None = None, split: Split | None = None,
                     version: str | None = None,
                     top_cells: int = Query(DEFAULT_TOP_CELLS, ge=0, le=MAX_CELLS, description=TOP_CELLS_HELP),
                     cell_level: int | None = Query(None, ge=0, description=CELL_LEVEL_HELP),
                     rerank: bool = Query(False, description=RERANK_HELP)):
        return service.search_image(image_id, model=model, k=k, near=near, within=within, area=area,
                                    split=split, version=version, top_cells=top_cells, cell_level=cell_level,
                                    rerank=rerank)

    @app.get("/api/random-query", tags=["search"], summary="A random query image of a split")
    def random_query(split: Split = "test"):
        return service.random_query(split)

    @app.get("/api/models", tags=["registry"], summary="Models ready to search with, best validated first")
    def models():
        return service.models()

    @app.get("/api/areas", tags=["registry"], summary="The areas as a GeoJSON FeatureCollection")
    def areas():
        return service.areas()

    @app.get("/api/images/{image_id}", tags=["images"], summary="One image and where it was taken")
    def image(image_id: int = PathParam(ge=1)):
        return service.image_info(image_id)

    @app.get("/api/images/{image_id}/thumbnail", tags=["images"], response_class=Response,
             summary="A JPEG thumbnail of a database image", responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(image_id: int = PathParam(ge=1), size: int = DEFAULT_THUMB):
        return Response(service.thumbnail(image_id, size), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/locations/{location_id}/images", tags=["images"], summary="The images of one location")
    def location_images(location_id: int):
        return service.location_images(location_id)

    @app.get("/api/eval-runs", tags=["evaluation"], summary="Stored evaluation runs, newest first")
    def eval_runs():
        return service.eval_runs()

    @app.get("/api/eval-runs/{run_id}/predictions", tags=["evaluation"],
             summary="Every query of a run as a line from truth to prediction (GeoJSON), worst first")
    def eval_predictions(run_id: int):
        return service.eval_predictions(run_id)

    return app


ENV_MODEL = "GEOLOC_SERVE_MODEL"


def app_from_env() -> FastAPI:
    """The factory uvicorn's worker processes call (`geoloc serve --workers N`): model from the environment."""
    return create_app(model=os.environ.get(ENV_MODEL) or None)
