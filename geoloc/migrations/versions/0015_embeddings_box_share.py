"""The share of embeddings a bounding box holds, from the statistics of embeddings.geom.

knn.sql chooses its plan by how many of a model's embeddings a region's box holds. Counting them
reads every row up to the threshold (about 0.5 us each: 4 ms for 7,000 rows at 1M, paid by every
large-region search); PostGIS's own selectivity estimate of the box (the one the planner uses) costs
a fraction of a millisecond whatever the size. The estimate needs statistics, which a table never
analysed lacks: the function then returns NULL and knn.sql counts instead.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

FUNCTION = """
CREATE FUNCTION embeddings_box_share(box geometry) RETURNS float8
LANGUAGE plpgsql STABLE STRICT AS $$
BEGIN
    RETURN _postgis_selectivity('embeddings'::regclass, 'geom', box);
EXCEPTION WHEN internal_error THEN
    RETURN NULL;  -- "stats for embeddings.geom do not exist": never analysed
END
$$;
"""


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS embeddings_box_share(geometry)")
