"""resumable uploads keep their hashing state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('file_upload_sessions') as batch_op:
        batch_op.add_column(sa.Column('digest_state', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('file_upload_sessions') as batch_op:
        batch_op.drop_column('digest_state')
