"""API tokens that may stage but not publish

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('upload2_api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('may_publish', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade():
    with op.batch_alter_table('upload2_api_tokens', schema=None) as batch_op:
        batch_op.drop_column('may_publish')
