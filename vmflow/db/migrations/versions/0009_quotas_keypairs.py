"""quota overrides and keypairs

Per-project quota limits (``quota_overrides``), users' key pairs
(``key_pairs``), and on instances the key pair named at boot and whether the
guest gets a config drive.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 04:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'quota_overrides',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('resource', sa.String(length=64), nullable=False),
        sa.Column('hard_limit', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('project_id', 'resource'),
    )
    with op.batch_alter_table('quota_overrides', schema=None) as batch_op:
        batch_op.create_index('ix_quota_overrides_project_id', ['project_id'])
    op.create_table(
        'key_pairs',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.String(length=255), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('type', sa.String(length=8), nullable=False),
        sa.Column('fingerprint', sa.String(length=255), nullable=False),
        sa.Column('public_key', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('user_id', 'name'),
    )
    with op.batch_alter_table('key_pairs', schema=None) as batch_op:
        batch_op.create_index('ix_key_pairs_user_id', ['user_id'])
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_name', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('key_data', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('config_drive', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('config_drive')
        batch_op.drop_column('key_data')
        batch_op.drop_column('key_name')
    op.drop_table('key_pairs')
    op.drop_table('quota_overrides')
