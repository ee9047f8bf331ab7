"""Collection: locations unique per (source, buffer, order), and the collection views for QGIS.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from pathlib import Path

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# The SQL as of this revision, frozen beside it (geoloc/sql/views/ holds the head's text and may move on).
FROZEN = Path(__file__).resolve().parent / "sql"

# (view name, frozen file) in creation order; dropped in reverse
VIEWS = (
    ("v_grid_points", "0002_collection_grid_points.sql"),
    ("v_panoramas", "0002_collection_panoramas.sql"),
    ("v_locations", "0002_collection_locations.sql"),
    ("v_split_coverage", "0002_collection_split_coverage.sql"),
)


def upgrade() -> None:
    # CSV-imported and selected locations may share (buffer, order): the order is unique per source
    op.drop_constraint('uq_locations_buffer_m_order_no', 'locations', type_='unique')
    op.create_unique_constraint(op.f('uq_locations_source_buffer_m_order_no'), 'locations',
                                ['source', 'buffer_m', 'order_no'])
    for _, name in VIEWS:
        op.execute((FROZEN / name).read_text())


def downgrade() -> None:
    for view, _ in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_constraint('uq_locations_source_buffer_m_order_no', 'locations', type_='unique')
    op.create_unique_constraint(op.f('uq_locations_buffer_m_order_no'), 'locations', ['buffer_m', 'order_no'])
