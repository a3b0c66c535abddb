"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-21
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = ("index",)
depends_on = None


def upgrade():
    op.create_table('projects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('normalized_name', sa.String(length=200), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_projects')),
    sa.UniqueConstraint('normalized_name', name=op.f('uq_projects_normalized_name'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('releases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('canonical_version', sa.String(length=100), nullable=False),
    sa.Column('published', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_releases_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_releases')),
    sa.UniqueConstraint('project_id', 'canonical_version', name=op.f('uq_releases_project_id'))
    )
    op.create_table('roles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role_name', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_roles_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_roles_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roles')),
    sa.UniqueConstraint('project_id', 'user_id', name=op.f('uq_roles_project_id'))
    )
    with op.batch_alter_table('roles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_roles_user_id'), ['user_id'], unique=False)

    op.create_table('publishing_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('release_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('reserves_name', sa.Boolean(), nullable=False),
    sa.Column('status', sa.Enum('open', 'processing', 'published', 'error', 'canceled', name='publishingstatus', native_enum=False, length=16), nullable=False),
    sa.Column('notices', sa.JSON(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_publishing_sessions_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_publishing_sessions_project_id_projects'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_publishing_sessions_release_id_releases'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_publishing_sessions')),
    sa.UniqueConstraint('token_digest', name=op.f('uq_publishing_sessions_token_digest'))
    )
    with op.batch_alter_table('publishing_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_publishing_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_publishing_sessions_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_publishing_sessions_status'), ['status'], unique=False)
        batch_op.create_index('uq_publishing_sessions_live_release', ['release_id'], unique=True, sqlite_where=sa.text("status IN ('open', 'processing', 'error')"), postgresql_where=sa.text("status IN ('open', 'processing', 'error')"))

    op.create_table('file_upload_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('publishing_session_id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('packagetype', sa.String(length=20), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('hashes', sa.JSON(), nullable=False),
    sa.Column('mechanism', sa.String(length=100), nullable=False),
    sa.Column('status', sa.Enum('pending', 'processing', 'completed', 'error', 'canceled', name='filestatus', native_enum=False, length=16), nullable=False),
    sa.Column('notices', sa.JSON(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_size', sa.BigInteger(), nullable=True),
    sa.Column('received_hashes', sa.JSON(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('requires_python', sa.Text(), nullable=True),
    sa.Column('metadata_sha256', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['publishing_session_id'], ['publishing_sessions.id'], name=op.f('fk_file_upload_sessions_publishing_session_id_publishing_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_file_upload_sessions'))
    )
    with op.batch_alter_table('file_upload_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_file_upload_sessions_publishing_session_id'), ['publishing_session_id'], unique=False)
        batch_op.create_index('uq_file_upload_sessions_live_filename', ['publishing_session_id', 'filename'], unique=True, sqlite_where=sa.text("status != 'canceled'"), postgresql_where=sa.text("status != 'canceled'"))

    op.create_table('release_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('packagetype', sa.String(length=20), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('requires_python', sa.Text(), nullable=True),
    sa.Column('blob_key', sa.Text(), nullable=False),
    sa.Column('metadata_sha256', sa.String(length=64), nullable=True),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('publishing_session_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['publishing_session_id'], ['publishing_sessions.id'], name=op.f('fk_release_files_publishing_session_id_publishing_sessions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_release_files_release_id_releases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_release_files')),
    sa.UniqueConstraint('filename', name=op.f('uq_release_files_filename'))
    )
    with op.batch_alter_table('release_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_release_files_publishing_session_id'), ['publishing_session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_release_files_release_id'), ['release_id'], unique=False)
        batch_op.create_index('uq_release_files_one_sdist', ['release_id'], unique=True, sqlite_where=sa.text("packagetype = 'sdist'"), postgresql_where=sa.text("packagetype = 'sdist'"))



def downgrade():
    with op.batch_alter_table('release_files', schema=None) as batch_op:
        batch_op.drop_index('uq_release_files_one_sdist', sqlite_where=sa.text("packagetype = 'sdist'"), postgresql_where=sa.text("packagetype = 'sdist'"))
        batch_op.drop_index(batch_op.f('ix_release_files_release_id'))
        batch_op.drop_index(batch_op.f('ix_release_files_publishing_session_id'))

    op.drop_table('release_files')
    with op.batch_alter_table('file_upload_sessions', schema=None) as batch_op:
        batch_op.drop_index('uq_file_upload_sessions_live_filename', sqlite_where=sa.text("status != 'canceled'"), postgresql_where=sa.text("status != 'canceled'"))
        batch_op.drop_index(batch_op.f('ix_file_upload_sessions_publishing_session_id'))

    op.drop_table('file_upload_sessions')
    with op.batch_alter_table('publishing_sessions', schema=None) as batch_op:
        batch_op.drop_index('uq_publishing_sessions_live_release', sqlite_where=sa.text("status IN ('open', 'processing', 'error')"), postgresql_where=sa.text("status IN ('open', 'processing', 'error')"))
        batch_op.drop_index(batch_op.f('ix_publishing_sessions_status'))
        batch_op.drop_index(batch_op.f('ix_publishing_sessions_project_id'))
        batch_op.drop_index(batch_op.f('ix_publishing_sessions_expires_at'))

    op.drop_table('publishing_sessions')
    with op.batch_alter_table('roles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_roles_user_id'))

    op.drop_table('roles')
    op.drop_table('releases')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))

    op.drop_table('api_tokens')
    op.drop_table('users')
    op.drop_table('projects')
