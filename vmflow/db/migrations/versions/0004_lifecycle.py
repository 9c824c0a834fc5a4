"""lifecycle operations: instance locks, event hosts, notifications

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 21:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locked', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('locked_by', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('locked_reason', sa.String(length=255), nullable=True))
    with op.batch_alter_table('flow_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('host', sa.String(length=255), nullable=True))
    op.create_table(
        'notifications',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('event_type', sa.String(length=255), nullable=False),
        sa.Column('priority', sa.String(length=16), nullable=False),
        sa.Column('publisher_id', sa.String(length=255), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=True),
        sa.Column('request_id', sa.String(length=64), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_event_type', ['event_type'])
        batch_op.create_index('ix_notifications_instance_uuid', ['instance_uuid'])
        batch_op.create_index('ix_notifications_request_id', ['request_id'])


def downgrade() -> None:
    op.drop_table('notifications')
    with op.batch_alter_table('flow_events', schema=None) as batch_op:
        batch_op.drop_column('host')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('locked_reason')
        batch_op.drop_column('locked_by')
        batch_op.drop_column('locked')
