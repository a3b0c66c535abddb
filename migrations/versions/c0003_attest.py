"""PEP 740 attestations posted for files before their completion, and whether a file has any

Revision ID: c0003_attest
Revises: c0003_groups
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = 'c0003_attest'
down_revision = 'c0003_groups'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('upload2_attestations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('file_upload_session_id', sa.Integer(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('publisher', sa.JSON(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['file_upload_session_id'], ['upload2_file_upload_sessions.id'], name=op.f('fk_upload2_attestations_file_upload_session_id_upload2_file_upload_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_attestations'))
    )
    with op.batch_alter_table('upload2_attestations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload2_attestations_file_upload_session_id'), ['file_upload_session_id'], unique=False)
    with op.batch_alter_table('upload2_file_upload_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attested', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('upload2_file_upload_sessions', schema=None) as batch_op:
        batch_op.drop_column('attested')
    op.drop_table('upload2_attestations')
