"""Imagery: images.root (the folder image paths are relative to) and the imagery views for QGIS.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from pathlib import Path

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# The SQL as of this revision, frozen beside it (geoloc/sql/views/ holds the head's text and may move on).
FROZEN = Path(__file__).resolve().parent / "sql"

VIEWS = ("v_images", "v_image_locations", "v_capture_jobs")
VIEW_FILES = ("0003_imagery_images.sql", "0003_imagery_locations.sql", "0003_imagery_capture_jobs.sql")


def upgrade() -> None:
    # existing rows (if any) were imported relative to nothing known: '' until re-imported
    op.add_column('images', sa.Column('root', sa.Text(), server_default='', nullable=False))
    op.alter_column('images', 'root', server_default=None)
    for name in VIEW_FILES:
        op.execute((FROZEN / name).read_text())


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_column('images', 'root')
