"""Each embedding carries its image's location (embeddings.geom), indexed with the model id.

A region-limited search then reads one table: the exact ranking of a small region is one GiST scan
of (model_id, geom) and the HNSW walk of a large one checks the region on the row it already has,
instead of joining every candidate to images and locations. The copy follows its source: a trigger
fills it on every insert or update of an embedding (whatever the statement wrote), and moving a
location or re-assigning an image updates the copies of its embeddings.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
from geoalchemy2 import Geometry

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

FUNCTIONS = """
CREATE FUNCTION image_location_geom(image bigint) RETURNS geometry
LANGUAGE sql STABLE AS $$
    SELECT l.geom FROM images AS i JOIN locations AS l ON l.id = i.location_id WHERE i.id = image
$$;

CREATE FUNCTION embeddings_geom_from_location() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.geom := image_location_geom(NEW.image_id);
    RETURN NEW;
END
$$;

CREATE FUNCTION embeddings_geom_follow_location() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE embeddings AS e SET geom = NEW.geom
    FROM images AS i
    WHERE i.location_id = NEW.id AND e.image_id = i.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION embeddings_geom_follow_image() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE embeddings AS e SET geom = (SELECT l.geom FROM locations AS l WHERE l.id = NEW.location_id)
    WHERE e.image_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER embeddings_geom_from_location
BEFORE INSERT OR UPDATE ON embeddings
FOR EACH ROW EXECUTE FUNCTION embeddings_geom_from_location();

CREATE TRIGGER embeddings_geom_follow_location
AFTER UPDATE OF geom ON locations
FOR EACH ROW WHEN (OLD.geom IS DISTINCT FROM NEW.geom)
EXECUTE FUNCTION embeddings_geom_follow_location();

CREATE TRIGGER embeddings_geom_follow_image
AFTER UPDATE OF location_id ON images
FOR EACH ROW WHEN (OLD.location_id IS DISTINCT FROM NEW.location_id)
EXECUTE FUNCTION embeddings_geom_follow_image();
"""


def upgrade() -> None:
    # the index needs btree_gist (config.EXTENSIONS: created before migrating, as PostGIS and pgvector)
    op.add_column('embeddings', sa.Column(
        'geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False,
                         from_text='ST_GeomFromEWKT', name='geometry', nullable=True), nullable=True))
    op.execute(FUNCTIONS)
    # Filled by rewriting the table (ALTER ... TYPE ... USING) rather than by an UPDATE: no dead rows,
    # and the HNSW indexes are rebuilt from the new heap instead of receiving a second entry per row
    # (pgvector 0.8.0 can corrupt an HNSW index while vacuuming dead rows). The rebuild is serial:
    # parallel HNSW builds overflow a buffer in pgvector < 0.8.2.
    op.execute("SET LOCAL max_parallel_maintenance_workers = 0")
    op.execute("SET LOCAL maintenance_work_mem = '1GB'")  # as a build of geoloc.retrieval.index gets
    op.execute("ALTER TABLE embeddings ALTER COLUMN geom TYPE geometry(Point, 4326) "
               "USING image_location_geom(image_id)")
    op.alter_column('embeddings', 'geom', nullable=False)
    op.create_index('ix_embeddings_model_geom', 'embeddings', ['model_id', 'geom'], unique=False,
                    postgresql_using='gist')
    # statistics for the new column now: without them the planner takes every region for a few rows
    op.execute("ANALYZE embeddings")


def downgrade() -> None:
    op.drop_index('ix_embeddings_model_geom', table_name='embeddings', postgresql_using='gist')
    op.execute("DROP TRIGGER IF EXISTS embeddings_geom_follow_image ON images")
    op.execute("DROP TRIGGER IF EXISTS embeddings_geom_follow_location ON locations")
    op.execute("DROP TRIGGER IF EXISTS embeddings_geom_from_location ON embeddings")
    op.execute("DROP FUNCTION IF EXISTS embeddings_geom_follow_image()")
    op.execute("DROP FUNCTION IF EXISTS embeddings_geom_follow_location()")
    op.execute("DROP FUNCTION IF EXISTS embeddings_geom_from_location()")
    op.execute("DROP FUNCTION IF EXISTS image_location_geom(bigint)")
    op.drop_column('embeddings', 'geom')
