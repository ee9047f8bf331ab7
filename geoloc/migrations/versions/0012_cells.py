"""Geo-cells: adaptive H3 partitionings, each location's cell, per-model cell heads, and v_cells.

Revision ID: 0012
Revises: 0007
Create Date: 2026-12-01
"""
from pathlib import Path

from alembic import op
import sqlalchemy as sa
import geoalchemy2
import pgvector.sqlalchemy
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

# The view as of this revision, frozen beside it (geoloc/sql/views/ holds the head's text and may move on).
FROZEN = Path(__file__).resolve().parent / "sql"

revision = '0012'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cell_partitions',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('levels', sa.SmallInteger(), nullable=False),
    sa.Column('img_min', sa.Integer(), nullable=False),
    sa.Column('img_max', postgresql.ARRAY(sa.Integer()), nullable=False),
    sa.Column('min_res', sa.SmallInteger(), nullable=False),
    sa.Column('max_res', sa.SmallInteger(), nullable=False),
    sa.Column('split', sa.String(length=8), nullable=False),
    sa.Column('images', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('levels >= 1 AND cardinality(img_max) = levels', name=op.f('ck_cell_partitions_levels')),
    sa.CheckConstraint('min_res BETWEEN 0 AND 15 AND max_res BETWEEN min_res AND 15', name=op.f('ck_cell_partitions_res')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cell_partitions')),
    sa.UniqueConstraint('name', name=op.f('uq_cell_partitions_name'))
    )
    op.create_geospatial_table('cells',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('partition_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('class_index', sa.Integer(), nullable=False),
    sa.Column('h3', sa.String(length=16), nullable=False),
    sa.Column('resolution', sa.SmallInteger(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('images', sa.Integer(), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('centroid', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['cells.id'], name=op.f('fk_cells_parent_id_cells'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['partition_id'], ['cell_partitions.id'], name=op.f('fk_cells_partition_id_cell_partitions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cells')),
    sa.UniqueConstraint('partition_id', 'level', 'class_index', name=op.f('uq_cells_partition_id_level_class_index')),
    sa.UniqueConstraint('partition_id', 'level', 'h3', name=op.f('uq_cells_partition_id_level_h3'))
    )
    op.create_geospatial_index('idx_cells_centroid', 'cells', ['centroid'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('idx_cells_geom', 'cells', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_table('location_cells',
    sa.Column('partition_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('cell_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['cell_id'], ['cells.id'], name=op.f('fk_location_cells_cell_id_cells'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_location_cells_location_id_locations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['partition_id'], ['cell_partitions.id'], name=op.f('fk_location_cells_partition_id_cell_partitions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('partition_id', 'level', 'location_id', name=op.f('pk_location_cells'))
    )
    op.create_index(op.f('ix_location_cells_cell_id'), 'location_cells', ['cell_id'], unique=False)
    op.create_table('model_cells',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('cell_id', sa.Integer(), nullable=False),
    sa.Column('weight', pgvector.sqlalchemy.vector.VECTOR(), nullable=False),
    sa.Column('bias', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['cell_id'], ['cells.id'], name=op.f('fk_model_cells_cell_id_cells'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_model_cells_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'cell_id', name=op.f('pk_model_cells'))
    )
    op.create_index('ix_model_cells_cell_id', 'model_cells', ['cell_id'], unique=False)
    op.execute((FROZEN / "0012_cells.sql").read_text())


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_cells")
    op.drop_index('ix_model_cells_cell_id', table_name='model_cells')
    op.drop_table('model_cells')
    op.drop_index(op.f('ix_location_cells_cell_id'), table_name='location_cells')
    op.drop_table('location_cells')
    op.drop_geospatial_index('idx_cells_geom', table_name='cells', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_index('idx_cells_centroid', table_name='cells', postgresql_using='gist', column_name='centroid')
    op.drop_geospatial_table('cells')
    op.drop_table('cell_partitions')
