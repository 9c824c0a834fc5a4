"""flow events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 20:32:26.821946
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('flow_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('flow_id', sa.String(length=36), nullable=False),
    sa.Column('step', sa.String(length=255), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('results', sa.JSON(), nullable=True),
    sa.Column('failure', sa.JSON(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['flow_id'], ['flow_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('flow_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flow_events_flow_id'), ['flow_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('flow_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flow_events_flow_id'))

    op.drop_table('flow_events')
