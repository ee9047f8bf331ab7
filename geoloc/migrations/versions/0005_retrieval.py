"""Retrieval: the evaluation view for QGIS.

Per-model HNSW indexes are not part of the schema: `geoloc embed` builds them at run time (named
embeddings_hnsw_<model id>, which schema comparisons ignore), because each needs its model's dimension.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""
from pathlib import Path

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The SQL as of this revision, frozen beside it (geoloc/sql/views/ holds the head's text and may move on).
FROZEN = Path(__file__).resolve().parent / "sql"

VIEWS = ("v_eval_predictions",)
VIEW_FILES = ("0005_retrieval_eval_predictions.sql",)


def upgrade() -> None:
    for name in VIEW_FILES:
        op.execute((FROZEN / name).read_text())


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")
