"""The tables of the whole pipeline, as SQLAlchemy 2 models.

Geometries are WGS84 (SRID 4326) with GiST indexes so QGIS draws them as they are; metric work
(grid spacing, buffers, errors in metres) transforms to SWEREF99 TM (EPSG:3006) in the queries.
Embeddings of all models share one table whose column (halfvec: 16-bit floats) has no fixed
dimension; each model gets its own partial HNSW index on a cast to its dimension (see
geoloc.retrieval.index).
"""

from __future__ import annotations

from datetime import date, datetime

from geoalchemy2 import Geometry
from pgvector.sqlalchemy import HALFVEC, VECTOR
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..splits import SPLITS

SRID = 4326
SPLIT_CHECK = "split IN (" + ",".join(f"'{s}'" for s in SPLITS) + ")"  # split IN ('train','val','test')

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _point(nullable: bool = False):
    return mapped_column(Geometry("POINT", srid=SRID, spatial_index=True), nullable=nullable)


def _created():
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Area(Base):
    """A polygon of interest: the grid is laid over it and searches can be limited to it."""

    __tablename__ = "areas"
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    geom = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=True), nullable=False)
    area_m2: Mapped[float] = mapped_column(Double)
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class GridPoint(Base):
    """A candidate point of a regular grid over an area; idx is stable for (area, spacing)."""

    __tablename__ = "grid_points"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="CASCADE"))
    spacing_m: Mapped[float] = mapped_column(Double)
    idx: Mapped[int] = mapped_column(Integer)
    geom = _point()
    __table_args__ = (UniqueConstraint("area_id", "spacing_m", "idx"),)


class Panorama(Base):
    """A Street View panorama, deduplicated by its id: many grid points snap to the same one."""

    __tablename__ = "panoramas"
    pano_id: Mapped[str] = mapped_column(Text, primary_key=True)
    geom = _point()
    capture_month: Mapped[date | None] = mapped_column(Date)
    copyright: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = _created()


class MetadataAnswer(Base):
    """What the metadata API answered for one grid point, and when."""

    __tablename__ = "metadata_answers"
    grid_point_id: Mapped[int] = mapped_column(
        ForeignKey("grid_points.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(32))
    pano_id: Mapped[str | None] = mapped_column(ForeignKey("panoramas.pano_id"), index=True)
    answered_at: Mapped[datetime] = _created()
    __table_args__ = (
        CheckConstraint(
            "status IN ('OK','ZERO_RESULTS','NOT_FOUND','OVER_QUERY_LIMIT','REQUEST_DENIED',"
            "'INVALID_REQUEST','UNKNOWN_ERROR')",
            name="status",
        ),
        CheckConstraint("(status = 'OK') = (pano_id IS NOT NULL)", name="ok_has_pano"),
    )


class MetadataClaim(Base):
    """A grid point a metadata worker is asking about: held while the worker's session (pid) lives."""

    __tablename__ = "metadata_claims"
    grid_point_id: Mapped[int] = mapped_column(
        ForeignKey("grid_points.id", ondelete="CASCADE"), primary_key=True
    )
    worker: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    claimed_at: Mapped[datetime] = _created()


class Location(Base):
    """A selected place: kept by a buffer selection, photographed, and assigned to a split."""

    __tablename__ = "locations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pano_id: Mapped[str | None] = mapped_column(ForeignKey("panoramas.pano_id"), index=True)
    grid_idx: Mapped[int | None] = mapped_column(Integer)
    grid_geom = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False), nullable=True)
    geom = _point()
    buffer_m: Mapped[float] = mapped_column(Double)
    order_no: Mapped[int] = mapped_column(Integer)
    dist_to_origin_m: Mapped[float] = mapped_column(Double)
    split: Mapped[str | None] = mapped_column(String(8), index=True)
    source: Mapped[str] = mapped_column(Text, server_default="selection")
    __table_args__ = (
        CheckConstraint(SPLIT_CHECK, name="split"),
        # CSV-imported and selected locations may share (buffer, order): unique per source
        UniqueConstraint("source", "buffer_m", "order_no"),
    )


class Image(Base):
    """One image file: a time-machine view of a location in one heading."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    heading: Mapped[int] = mapped_column(SmallInteger)
    time_index: Mapped[int] = mapped_column(SmallInteger)
    capture_month: Mapped[date | None] = mapped_column(Date)
    scraped_at: Mapped[datetime | None] = mapped_column(DateTime)
    # the file is Path(root) / path: root is the absolute folder it was imported from or captured into
    root: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text, unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(SmallInteger)
    height: Mapped[int] = mapped_column(SmallInteger)
    split: Mapped[str | None] = mapped_column(String(8))
    version: Mapped[str] = mapped_column(String(16), server_default="v1")
    is_query: Mapped[bool] = mapped_column(Boolean, server_default="false")
    source: Mapped[str] = mapped_column(Text, server_default="import")
    imported_at: Mapped[datetime] = _created()
    __table_args__ = (
        CheckConstraint("heading >= 0", name="heading"),
        CheckConstraint("time_index >= 0", name="time_index"),
        CheckConstraint(SPLIT_CHECK, name="split"),
        Index("ix_images_split_version", "split", "version"),
        Index("ix_images_location_heading", "location_id", "heading"),
    )


class CaptureJob(Base):
    """A queued capture of one location by one backend; workers claim with SKIP LOCKED."""

    __tablename__ = "capture_jobs"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    backend: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = _created()
    locked_by: Mapped[str | None] = mapped_column(Text)
    locked_pid: Mapped[int | None] = mapped_column(Integer)  # database session of the running worker
    locked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("location_id", "backend"),
        CheckConstraint("status IN ('pending','running','done','failed')", name="status"),
        Index("ix_capture_jobs_status_next", "status", "next_attempt_at"),
    )


class Model(Base):
    """A trained retrieval model: how it was made, where its weights are, how well it did."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    backbone: Mapped[str] = mapped_column(Text)
    dim: Mapped[int] = mapped_column(Integer)
    input_size: Mapped[int] = mapped_column(Integer)
    hyperparams: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    train_split: Mapped[str | None] = mapped_column(String(8))
    data_counts: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    weights_path: Mapped[str | None] = mapped_column(Text)
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    train_seconds: Mapped[float | None] = mapped_column(Double)
    history: Mapped[list] = mapped_column(JSONB, server_default="[]")
    metrics: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    status: Mapped[str] = mapped_column(String(16), server_default="training")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    __table_args__ = (
        CheckConstraint("dim > 0 AND dim <= 16000", name="dim"),
        CheckConstraint("status IN ('training','ready','failed')", name="status"),
    )


class Embedding(Base):
    """An image's embedding under one model (no fixed dimension: one table, many models).

    Stored as halfvec, 16-bit floats (about three significant digits, largest value 65504): half the
    bytes of float32 `vector`, and nothing measurable lost on L2-normalised embeddings. Writers send
    `vector`s, cast on insert; readers that want floats select ``embedding::vector``.
    """

    __tablename__ = "embeddings"
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    embedding = mapped_column(HALFVEC(), nullable=False)
    # the image's location, copied so that a region-limited search reads one table; set by a trigger
    # on every insert/update and kept equal when a location moves (migration 0014's triggers)
    geom = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False), nullable=False)
    __table_args__ = (
        Index("ix_embeddings_image_id", "image_id"),
        Index("ix_embeddings_model_geom", "model_id", "geom", postgresql_using="gist"),
    )


class EvalRun(Base):
    """One evaluation: a model (or the thumbnail baseline) on a split/version."""

    __tablename__ = "eval_runs"
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(32))
    split: Mapped[str] = mapped_column(String(8))
    version: Mapped[str | None] = mapped_column(String(16))
    metrics: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = _created()


class EvalPrediction(Base):
    """Where one query image was predicted to be, and how far off that was."""

    __tablename__ = "eval_predictions"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"))
    query_image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    query_geom = _point()
    top1_location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    top1_geom = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False), nullable=True)
    top1_error_m: Mapped[float | None] = mapped_column(Double)
    consensus_location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))
    consensus_geom = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False), nullable=True)
    consensus_error_m: Mapped[float | None] = mapped_column(Double)
    first_correct_rank: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (UniqueConstraint("run_id", "query_image_id"),)


class CellPartition(Base):
    """An adaptive H3 partitioning of the training images into geo-cells, coarse to fine levels.

    Level l splits every H3 cell holding more than img_max[l] training images into its children
    (from min_res down to max_res) and drops cells under img_min (see geoloc.cells.partition).
    """

    __tablename__ = "cell_partitions"
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    levels: Mapped[int] = mapped_column(SmallInteger)
    img_min: Mapped[int] = mapped_column(Integer)
    img_max: Mapped[list] = mapped_column(ARRAY(Integer))  # one per level, coarse to fine
    min_res: Mapped[int] = mapped_column(SmallInteger)
    max_res: Mapped[int] = mapped_column(SmallInteger)
    split: Mapped[str] = mapped_column(String(8))
    images: Mapped[int] = mapped_column(Integer)  # training images the cells were counted from
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        CheckConstraint("levels >= 1 AND cardinality(img_max) = levels", name="levels"),
        CheckConstraint("min_res BETWEEN 0 AND 15 AND max_res BETWEEN min_res AND 15", name="res"),
    )


class Cell(Base):
    """One class of one level of a partitioning: an H3 cell, its polygon and training-image count.

    geom is the exact union of the cell's H3 descendants at the partition's max_res, so every
    location assigned to the cell (by H3 index) lies inside it; parent_id is the cell of the next
    coarser level that contains it.
    """

    __tablename__ = "cells"
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    partition_id: Mapped[int] = mapped_column(ForeignKey("cell_partitions.id", ondelete="CASCADE"))
    level: Mapped[int] = mapped_column(SmallInteger)
    class_index: Mapped[int] = mapped_column(Integer)
    h3: Mapped[str] = mapped_column(String(16))
    resolution: Mapped[int] = mapped_column(SmallInteger)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cells.id", ondelete="CASCADE"))
    images: Mapped[int] = mapped_column(Integer)
    geom = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=True), nullable=False)
    centroid = _point()
    __table_args__ = (
        UniqueConstraint("partition_id", "level", "class_index"),
        UniqueConstraint("partition_id", "level", "h3"),
    )


class LocationCell(Base):
    """Which cell of each level of a partitioning a location (and so each of its images) falls in."""

    __tablename__ = "location_cells"
    partition_id: Mapped[int] = mapped_column(ForeignKey("cell_partitions.id", ondelete="CASCADE"),
                                              primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id", ondelete="CASCADE"), index=True)


class ModelCell(Base):
    """A model's classification head for one cell: logit = weight . embedding + bias.

    The head is linear on the L2-normalised embedding, so cell probabilities are computed in SQL
    from a stored or query embedding (geoloc/sql/search/knn_cells.sql). A partition used by a model
    cannot be deleted (RESTRICT): rebuilding renames it aside instead.
    """

    __tablename__ = "model_cells"
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id", ondelete="RESTRICT"), primary_key=True)
    weight = mapped_column(VECTOR(), nullable=False)
    bias: Mapped[float] = mapped_column(Double)
    __table_args__ = (Index("ix_model_cells_cell_id", "cell_id"),)
