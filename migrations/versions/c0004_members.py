"""A wheel's members as inflated while its bytes arrived: their table's digest

Revision ID: c0004_members
Revises: c0003_attest
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

revision = 'c0004_members'
down_revision = 'c0003_attest'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('upload2_file_upload_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('received_members', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('upload2_file_upload_sessions', schema=None) as batch_op:
        batch_op.drop_column('received_members')
