"""Initial schema: areas, grid, panoramas, metadata answers, locations, images, capture jobs, models, embeddings, evaluations.

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa
import geoalchemy2
import pgvector.sqlalchemy
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_geospatial_table('areas',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('area_m2', sa.Double(), nullable=False),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_areas')),
    sa.UniqueConstraint('name', name=op.f('uq_areas_name'))
    )
    op.create_geospatial_index('idx_areas_geom', 'areas', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_table('models',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('backbone', sa.Text(), nullable=False),
    sa.Column('dim', sa.Integer(), nullable=False),
    sa.Column('input_size', sa.Integer(), nullable=False),
    sa.Column('hyperparams', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('train_split', sa.String(length=8), nullable=True),
    sa.Column('data_counts', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('weights_path', sa.Text(), nullable=True),
    sa.Column('weights_sha256', sa.String(length=64), nullable=True),
    sa.Column('train_seconds', sa.Double(), nullable=True),
    sa.Column('history', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('metrics', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('status', sa.String(length=16), server_default='training', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('training','ready','failed')", name=op.f('ck_models_status')),
    sa.CheckConstraint('dim > 0 AND dim <= 16000', name=op.f('ck_models_dim')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('name', name=op.f('uq_models_name'))
    )
    op.create_geospatial_table('panoramas',
    sa.Column('pano_id', sa.Text(), nullable=False),
    sa.Column('geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('capture_month', sa.Date(), nullable=True),
    sa.Column('copyright', sa.Text(), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('pano_id', name=op.f('pk_panoramas'))
    )
    op.create_geospatial_index('idx_panoramas_geom', 'panoramas', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_table('eval_runs',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('split', sa.String(length=8), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=True),
    sa.Column('metrics', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_eval_runs_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eval_runs'))
    )
    op.create_index(op.f('ix_eval_runs_model_id'), 'eval_runs', ['model_id'], unique=False)
    op.create_geospatial_table('grid_points',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('area_id', sa.Integer(), nullable=False),
    sa.Column('spacing_m', sa.Double(), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_grid_points_area_id_areas'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grid_points')),
    sa.UniqueConstraint('area_id', 'spacing_m', 'idx', name=op.f('uq_grid_points_area_id_spacing_m_idx'))
    )
    op.create_geospatial_index('idx_grid_points_geom', 'grid_points', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('locations',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('pano_id', sa.Text(), nullable=True),
    sa.Column('grid_idx', sa.Integer(), nullable=True),
    sa.Column('grid_geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('buffer_m', sa.Double(), nullable=False),
    sa.Column('order_no', sa.Integer(), nullable=False),
    sa.Column('dist_to_origin_m', sa.Double(), nullable=False),
    sa.Column('split', sa.String(length=8), nullable=True),
    sa.Column('source', sa.Text(), server_default='selection', nullable=False),
    sa.CheckConstraint("split IN ('train','val','test')", name=op.f('ck_locations_split')),
    sa.ForeignKeyConstraint(['pano_id'], ['panoramas.pano_id'], name=op.f('fk_locations_pano_id_panoramas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_locations')),
    sa.UniqueConstraint('buffer_m', 'order_no', name=op.f('uq_locations_buffer_m_order_no'))
    )
    op.create_geospatial_index('idx_locations_geom', 'locations', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_locations_pano_id'), 'locations', ['pano_id'], unique=False)
    op.create_index(op.f('ix_locations_split'), 'locations', ['split'], unique=False)
    op.create_table('capture_jobs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('locked_by', sa.Text(), nullable=True),
    sa.Column('locked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('pending','running','done','failed')", name=op.f('ck_capture_jobs_status')),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_capture_jobs_location_id_locations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_capture_jobs')),
    sa.UniqueConstraint('location_id', 'backend', name=op.f('uq_capture_jobs_location_id_backend'))
    )
    op.create_index('ix_capture_jobs_status_next', 'capture_jobs', ['status', 'next_attempt_at'], unique=False)
    op.create_table('images',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('heading', sa.SmallInteger(), nullable=False),
    sa.Column('time_index', sa.SmallInteger(), nullable=False),
    sa.Column('capture_month', sa.Date(), nullable=True),
    sa.Column('scraped_at', sa.DateTime(), nullable=True),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('bytes', sa.Integer(), nullable=False),
    sa.Column('width', sa.SmallInteger(), nullable=False),
    sa.Column('height', sa.SmallInteger(), nullable=False),
    sa.Column('split', sa.String(length=8), nullable=True),
    sa.Column('version', sa.String(length=16), server_default='v1', nullable=False),
    sa.Column('is_query', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('source', sa.Text(), server_default='import', nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("split IN ('train','val','test')", name=op.f('ck_images_split')),
    sa.CheckConstraint('heading >= 0', name=op.f('ck_images_heading')),
    sa.CheckConstraint('time_index >= 0', name=op.f('ck_images_time_index')),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_images_location_id_locations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_images')),
    sa.UniqueConstraint('path', name=op.f('uq_images_path'))
    )
    op.create_index('ix_images_location_heading', 'images', ['location_id', 'heading'], unique=False)
    op.create_index(op.f('ix_images_sha256'), 'images', ['sha256'], unique=False)
    op.create_index('ix_images_split_version', 'images', ['split', 'version'], unique=False)
    op.create_table('metadata_answers',
    sa.Column('grid_point_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('pano_id', sa.Text(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(status = 'OK') = (pano_id IS NOT NULL)", name=op.f('ck_metadata_answers_ok_has_pano')),
    sa.CheckConstraint("status IN ('OK','ZERO_RESULTS','NOT_FOUND','OVER_QUERY_LIMIT','REQUEST_DENIED','INVALID_REQUEST','UNKNOWN_ERROR')", name=op.f('ck_metadata_answers_status')),
    sa.ForeignKeyConstraint(['grid_point_id'], ['grid_points.id'], name=op.f('fk_metadata_answers_grid_point_id_grid_points'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pano_id'], ['panoramas.pano_id'], name=op.f('fk_metadata_answers_pano_id_panoramas')),
    sa.PrimaryKeyConstraint('grid_point_id', name=op.f('pk_metadata_answers'))
    )
    op.create_index(op.f('ix_metadata_answers_pano_id'), 'metadata_answers', ['pano_id'], unique=False)
    op.create_table('embeddings',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.BigInteger(), nullable=False),
    sa.Column('embedding', pgvector.sqlalchemy.vector.VECTOR(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_embeddings_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_embeddings_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'image_id', name=op.f('pk_embeddings'))
    )
    op.create_index('ix_embeddings_image_id', 'embeddings', ['image_id'], unique=False)
    op.create_geospatial_table('eval_predictions',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('query_image_id', sa.BigInteger(), nullable=False),
    sa.Column('query_geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('top1_location_id', sa.Integer(), nullable=True),
    sa.Column('top1_geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('top1_error_m', sa.Double(), nullable=True),
    sa.Column('consensus_location_id', sa.Integer(), nullable=True),
    sa.Column('consensus_geom', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('consensus_error_m', sa.Double(), nullable=True),
    sa.Column('first_correct_rank', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['consensus_location_id'], ['locations.id'], name=op.f('fk_eval_predictions_consensus_location_id_locations')),
    sa.ForeignKeyConstraint(['query_image_id'], ['images.id'], name=op.f('fk_eval_predictions_query_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['eval_runs.id'], name=op.f('fk_eval_predictions_run_id_eval_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['top1_location_id'], ['locations.id'], name=op.f('fk_eval_predictions_top1_location_id_locations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eval_predictions')),
    sa.UniqueConstraint('run_id', 'query_image_id', name=op.f('uq_eval_predictions_run_id_query_image_id'))
    )
    op.create_geospatial_index('idx_eval_predictions_query_geom', 'eval_predictions', ['query_geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_eval_predictions_query_image_id'), 'eval_predictions', ['query_image_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_eval_predictions_query_image_id'), table_name='eval_predictions')
    op.drop_geospatial_index('idx_eval_predictions_query_geom', table_name='eval_predictions', postgresql_using='gist', column_name='query_geom')
    op.drop_geospatial_table('eval_predictions')
    op.drop_index('ix_embeddings_image_id', table_name='embeddings')
    op.drop_table('embeddings')
    op.drop_index(op.f('ix_metadata_answers_pano_id'), table_name='metadata_answers')
    op.drop_table('metadata_answers')
    op.drop_index('ix_images_split_version', table_name='images')
    op.drop_index(op.f('ix_images_sha256'), table_name='images')
    op.drop_index('ix_images_location_heading', table_name='images')
    op.drop_table('images')
    op.drop_index('ix_capture_jobs_status_next', table_name='capture_jobs')
    op.drop_table('capture_jobs')
    op.drop_index(op.f('ix_locations_split'), table_name='locations')
    op.drop_index(op.f('ix_locations_pano_id'), table_name='locations')
    op.drop_geospatial_index('idx_locations_geom', table_name='locations', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('locations')
    op.drop_geospatial_index('idx_grid_points_geom', table_name='grid_points', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('grid_points')
    op.drop_index(op.f('ix_eval_runs_model_id'), table_name='eval_runs')
    op.drop_table('eval_runs')
    op.drop_geospatial_index('idx_panoramas_geom', table_name='panoramas', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('panoramas')
    op.drop_table('models')
    op.drop_geospatial_index('idx_areas_geom', table_name='areas', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('areas')
