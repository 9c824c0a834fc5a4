"""compute API microversions: server description, user data, access addresses and
tags, flavor description, server group rules (2.1, 2.19, 2.26, 2.55, 2.57, 2.64)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 04:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('user_data', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('access_ip_v4', sa.String(length=39), nullable=True))
        batch_op.add_column(sa.Column('access_ip_v6', sa.String(length=39), nullable=True))
    with op.batch_alter_table('flavors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=True))
    with op.batch_alter_table('server_groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rules', sa.JSON(), nullable=False,
                                      server_default='{}'))
    op.create_table(
        'instance_tags',
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('tag', sa.String(length=60), nullable=False),
        sa.ForeignKeyConstraint(['instance_uuid'], ['instances.uuid'],
                                name='fk_instance_tags_instance_uuid'),
        sa.PrimaryKeyConstraint('instance_uuid', 'tag', name='pk_instance_tags'),
    )


def downgrade() -> None:
    op.drop_table('instance_tags')
    with op.batch_alter_table('server_groups', schema=None) as batch_op:
        batch_op.drop_column('rules')
    with op.batch_alter_table('flavors', schema=None) as batch_op:
        batch_op.drop_column('description')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('access_ip_v6')
        batch_op.drop_column('access_ip_v4')
        batch_op.drop_column('user_data')
        batch_op.drop_column('description')
