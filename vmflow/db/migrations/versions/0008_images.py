"""images: Glance v2 fields and uploads

Adds what the image API (``webapp/image``) records of an upload and shows:
the sha512 hash beside the md5 checksum, the virtual size read by qemu-img,
``protected`` and ``tags``; and makes ``size`` 64-bit (images exceed 2 GiB).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 04:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.alter_column('size', existing_type=sa.Integer(), type_=sa.BigInteger(),
                              existing_nullable=False)
        batch_op.add_column(sa.Column('os_hash_algo', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('os_hash_value', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('virtual_size', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('protected', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=False,
                                      server_default='[]'))
        batch_op.create_index('ix_images_owner', ['owner'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index('ix_images_owner')
        batch_op.drop_column('tags')
        batch_op.drop_column('protected')
        batch_op.drop_column('virtual_size')
        batch_op.drop_column('os_hash_value')
        batch_op.drop_column('os_hash_algo')
        batch_op.alter_column('size', existing_type=sa.BigInteger(), type_=sa.Integer(),
                              existing_nullable=False)
