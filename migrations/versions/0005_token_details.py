"""API tokens: a description, an optional expiry, and when each was last used

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('upload2_api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.String(length=100), server_default='', nullable=False))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_used', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('upload2_api_tokens', schema=None) as batch_op:
        batch_op.drop_column('last_used')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('description')
