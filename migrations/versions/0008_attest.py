"""Trusted publishers, the OIDC tokens they exchanged, tokens minted for them, and the
provenance of published files

Revision ID: 0008_attest
Revises: 0007
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = '0008_attest'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('upload2_trusted_publishers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('project_name', sa.String(length=200), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('repository', sa.String(length=200), nullable=False),
    sa.Column('workflow', sa.String(length=200), nullable=False),
    sa.Column('environment', sa.String(length=200), server_default='', nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['upload2_projects.id'], name=op.f('fk_upload2_trusted_publishers_project_id_upload2_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['upload2_users.id'], name=op.f('fk_upload2_trusted_publishers_user_id_upload2_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_trusted_publishers')),
    sa.UniqueConstraint('project_name', 'kind', 'repository', 'workflow', 'environment', name=op.f('uq_upload2_trusted_publishers_project_name'))
    )
    with op.batch_alter_table('upload2_trusted_publishers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload2_trusted_publishers_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_upload2_trusted_publishers_project_name'), ['project_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_upload2_trusted_publishers_user_id'), ['user_id'], unique=False)
    op.create_table('upload2_used_oidc_tokens',
    sa.Column('issuer', sa.String(length=200), nullable=False),
    sa.Column('jti', sa.String(length=200), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('issuer', 'jti', name=op.f('pk_upload2_used_oidc_tokens'))
    )
    with op.batch_alter_table('upload2_used_oidc_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload2_used_oidc_tokens_expires_at'), ['expires_at'], unique=False)
    with op.batch_alter_table('upload2_api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('publisher_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('project_name', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_upload2_api_tokens_publisher_id'), ['publisher_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_upload2_api_tokens_publisher_id_upload2_trusted_publishers'), 'upload2_trusted_publishers', ['publisher_id'], ['id'], ondelete='CASCADE')
    with op.batch_alter_table('upload2_release_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provenance', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('upload2_release_files', schema=None) as batch_op:
        batch_op.drop_column('provenance')
    # Minted tokens go with their publishers.
    op.execute("DELETE FROM upload2_api_tokens WHERE publisher_id IS NOT NULL")
    with op.batch_alter_table('upload2_api_tokens', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_upload2_api_tokens_publisher_id_upload2_trusted_publishers'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_upload2_api_tokens_publisher_id'))
        batch_op.drop_column('project_name')
        batch_op.drop_column('publisher_id')
    op.drop_table('upload2_used_oidc_tokens')
    op.drop_table('upload2_trusted_publishers')
