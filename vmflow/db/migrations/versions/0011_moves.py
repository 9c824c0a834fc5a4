"""moves: the migrations table (resize, cold and live migration, evacuation);
instances' system metadata, reservation id and launch index, and the old and
new flavor of a resize waiting for confirmation

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 07:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('system_metadata', sa.JSON(), nullable=False,
                                      server_default='{}'))
        batch_op.add_column(sa.Column('reservation_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('launch_index', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('old_flavor', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('new_flavor', sa.JSON(), nullable=True))
        batch_op.create_index('ix_instances_reservation_id', ['reservation_id'], unique=False)
    op.create_table(
        'migrations',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('migration_type', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('source_compute', sa.String(length=255), nullable=True),
        sa.Column('source_node', sa.String(length=255), nullable=True),
        sa.Column('dest_compute', sa.String(length=255), nullable=True),
        sa.Column('dest_node', sa.String(length=255), nullable=True),
        sa.Column('dest_host', sa.String(length=255), nullable=True),
        sa.Column('old_flavor_id', sa.String(length=255), nullable=True),
        sa.Column('new_flavor_id', sa.String(length=255), nullable=True),
        sa.Column('memory_total', sa.BigInteger(), nullable=True),
        sa.Column('memory_processed', sa.BigInteger(), nullable=True),
        sa.Column('memory_remaining', sa.BigInteger(), nullable=True),
        sa.Column('disk_total', sa.BigInteger(), nullable=True),
        sa.Column('disk_processed', sa.BigInteger(), nullable=True),
        sa.Column('disk_remaining', sa.BigInteger(), nullable=True),
        sa.Column('flow_id', sa.String(length=36), nullable=True),
        sa.Column('user_id', sa.String(length=255), nullable=True),
        sa.Column('project_id', sa.String(length=255), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'],
                                name='fk_migrations_instance_uuid'),
        sa.PrimaryKeyConstraint('id', name='pk_migrations'),
        sa.UniqueConstraint('uuid', name='uq_migrations_uuid'),
    )
    with op.batch_alter_table('migrations', schema=None) as batch_op:
        batch_op.create_index('ix_migrations_instance_uuid', ['instance_uuid'], unique=False)
        batch_op.create_index('ix_migrations_status', ['status'], unique=False)


def downgrade() -> None:
    op.drop_table('migrations')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_index('ix_instances_reservation_id')
        batch_op.drop_column('new_flavor')
        batch_op.drop_column('old_flavor')
        batch_op.drop_column('launch_index')
        batch_op.drop_column('reservation_id')
        batch_op.drop_column('system_metadata')
