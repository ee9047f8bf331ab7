"""Imagery: images.root (the folder image paths are relative to) and the imagery views for QGIS (issue 4).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa

from geoloc.db import sqlfiles

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

VIEWS = ("v_images", "v_image_locations", "v_capture_jobs")
VIEW_FILES = ("views/imagery_images.sql", "views/imagery_locations.sql", "views/imagery_capture_jobs.sql")


def upgrade() -> None:
    # existing rows (if any) were imported relative to nothing known: '' until re-imported
    op.add_column('images', sa.Column('root', sa.Text(), server_default='', nullable=False))
    op.alter_column('images', 'root', server_default=None)
    for name in VIEW_FILES:
        op.execute(sqlfiles.read(name))


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_column('images', 'root')
