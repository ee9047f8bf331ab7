"""Retrieval: the evaluation view for QGIS (issue 6).

Per-model HNSW indexes are not part of the schema: `geoloc embed` builds them at run time (named
embeddings_hnsw_<model id>, which schema comparisons ignore), because each needs its model's dimension.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa

from geoloc.db import sqlfiles

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

VIEWS = ("v_eval_predictions",)
VIEW_FILES = ("views/retrieval_eval_predictions.sql",)


def upgrade() -> None:
    for name in VIEW_FILES:
        op.execute(sqlfiles.read(name))


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")
