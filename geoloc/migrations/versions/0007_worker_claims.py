"""Exactly-once workers: metadata claims and the owner session of a running capture job.

A worker marks what it works on with its database session's process id (pg_backend_pid()) and
the time it took the work; the claim stands while that session is alive (pg_stat_activity), so
a killed worker's grid points and jobs are taken over by the next worker at once, without leases.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'metadata_claims',
        sa.Column('grid_point_id', sa.BigInteger(), nullable=False),
        sa.Column('worker', sa.Text(), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('claimed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['grid_point_id'], ['grid_points.id'],
                                name=op.f('fk_metadata_claims_grid_point_id_grid_points'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('grid_point_id', name=op.f('pk_metadata_claims')),
    )
    op.add_column('capture_jobs', sa.Column('locked_pid', sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column('capture_jobs', 'locked_pid')
    op.drop_table('metadata_claims')
