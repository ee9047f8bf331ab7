"""Collection: locations unique per (source, buffer, order), and the collection views for QGIS (issue 3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa

from geoloc.db import sqlfiles

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# (view name, file under sql/) in creation order; dropped in reverse
VIEWS = (
    ("v_grid_points", "views/collection_grid_points.sql"),
    ("v_panoramas", "views/collection_panoramas.sql"),
    ("v_locations", "views/collection_locations.sql"),
    ("v_split_coverage", "views/collection_split_coverage.sql"),
)


def upgrade() -> None:
    # CSV-imported and selected locations may share (buffer, order): the order is unique per source
    op.drop_constraint('uq_locations_buffer_m_order_no', 'locations', type_='unique')
    op.create_unique_constraint(op.f('uq_locations_source_buffer_m_order_no'), 'locations',
                                ['source', 'buffer_m', 'order_no'])
    for _, name in VIEWS:
        op.execute(sqlfiles.read(name))


def downgrade() -> None:
    for view, _ in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_constraint('uq_locations_source_buffer_m_order_no', 'locations', type_='unique')
    op.create_unique_constraint(op.f('uq_locations_buffer_m_order_no'), 'locations', ['buffer_m', 'order_no'])
