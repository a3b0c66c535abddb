"""scheduled publish: the time a publishing session waits for

Revision ID: c0002
Revises: c0001
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = 'c0002'
down_revision = 'c0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('upload2_publishing_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('publish_after', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('upload2_publishing_sessions', schema=None) as batch_op:
        batch_op.drop_column('publish_after')
