"""release groups: publishing sessions of several projects published together

Revision ID: c0003_groups
Revises: c0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = 'c0003_groups'
down_revision = 'c0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('upload2_release_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('open', 'processing', 'published', 'error', 'canceled', name='publishingstatus', native_enum=False, length=16), nullable=False),
    sa.Column('notices', sa.JSON(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('publish_after', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_release_groups')),
    sa.UniqueConstraint('token_digest', name=op.f('uq_upload2_release_groups_token_digest'))
    )
    with op.batch_alter_table('upload2_release_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload2_release_groups_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_upload2_release_groups_status'), ['status'], unique=False)
    with op.batch_alter_table('upload2_publishing_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_upload2_publishing_sessions_group_id'), ['group_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_upload2_publishing_sessions_group_id_upload2_release_groups'),
                                    'upload2_release_groups', ['group_id'], ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('upload2_publishing_sessions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_upload2_publishing_sessions_group_id_upload2_release_groups'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_upload2_publishing_sessions_group_id'))
        batch_op.drop_column('group_id')
    with op.batch_alter_table('upload2_release_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upload2_release_groups_status'))
        batch_op.drop_index(batch_op.f('ix_upload2_release_groups_expires_at'))
    op.drop_table('upload2_release_groups')
