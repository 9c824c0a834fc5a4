"""identity: projects, users, roles, role assignments and tokens

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 04:10:00

The three roles (admin, member, reader) and their implications (admin implies
member, member implies reader) are created here, so every database has them;
projects and users come from `vmflow identity bootstrap` / `vmflow up`.
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'projects',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('domain_id', sa.String(length=64), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('domain_id', 'name'),
    )
    op.create_table(
        'users',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('domain_id', sa.String(length=64), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('default_project_id', sa.String(length=64), nullable=True),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('domain_id', 'name'),
    )
    roles = op.create_table(
        'roles',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    implied = op.create_table(
        'implied_roles',
        sa.Column('prior_role_id', sa.String(length=64), nullable=False),
        sa.Column('implied_role_id', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['implied_role_id'], ['roles.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['prior_role_id'], ['roles.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('prior_role_id', 'implied_role_id'),
    )
    op.create_table(
        'role_assignments',
        sa.Column('user_id', sa.String(length=64), nullable=False),
        sa.Column('project_id', sa.String(length=64), nullable=False),
        sa.Column('role_id', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['role_id'], ['roles.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'project_id', 'role_id'),
    )
    with op.batch_alter_table('role_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_role_assignments_project_id'), ['project_id'],
                              unique=False)
    op.create_table(
        'tokens',
        sa.Column('id_hash', sa.String(length=64), nullable=False),
        sa.Column('audit_id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.String(length=64), nullable=False),
        sa.Column('project_id', sa.String(length=64), nullable=True),
        sa.Column('methods', sa.JSON(), nullable=False),
        sa.Column('issued_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id_hash'),
    )
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tokens_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tokens_user_id'), ['user_id'], unique=False)

    ids = {name: uuid.uuid4().hex for name in ('admin', 'member', 'reader')}
    op.bulk_insert(roles, [{'id': role_id, 'name': name} for name, role_id in ids.items()])
    op.bulk_insert(implied, [
        {'prior_role_id': ids['admin'], 'implied_role_id': ids['member']},
        {'prior_role_id': ids['member'], 'implied_role_id': ids['reader']},
    ])


def downgrade() -> None:
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tokens_user_id'))
        batch_op.drop_index(batch_op.f('ix_tokens_expires_at'))
    op.drop_table('tokens')
    with op.batch_alter_table('role_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_role_assignments_project_id'))
    op.drop_table('role_assignments')
    op.drop_table('implied_roles')
    op.drop_table('roles')
    op.drop_table('users')
    op.drop_table('projects')
