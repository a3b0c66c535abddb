"""publishing sessions no longer record whether they reserved a name (it was never read:
a name is reserved while its project has no published release)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('publishing_sessions') as batch_op:
        batch_op.drop_column('reserves_name')


def downgrade():
    with op.batch_alter_table('publishing_sessions') as batch_op:
        batch_op.add_column(sa.Column('reserves_name', sa.Boolean(), nullable=False, server_default=sa.false()))
