"""the plugin's own tables: publishing and file upload sessions, reserved names

The root of the ``core`` branch: all a host index's database needs
(``pypi-upload2 db upgrade --core``). The built-in index's tables are the ``index`` branch.

Revision ID: c0001
Revises:
Create Date: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa


revision = 'c0001'
down_revision = None
branch_labels = ('core',)
depends_on = None

LIVE = sa.text("status IN ('open', 'processing', 'error')")
NOT_CANCELED = sa.text("status != 'canceled'")


def upgrade():
    op.create_table('upload2_publishing_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('normalized_name', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('canonical_version', sa.String(length=100), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('open', 'processing', 'published', 'error', 'canceled', name='publishingstatus', native_enum=False, length=16), nullable=False),
    sa.Column('notices', sa.JSON(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_publishing_sessions')),
    sa.UniqueConstraint('token_digest', name=op.f('uq_upload2_publishing_sessions_token_digest'))
    )
    with op.batch_alter_table('upload2_publishing_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload2_publishing_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_upload2_publishing_sessions_normalized_name'), ['normalized_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_upload2_publishing_sessions_status'), ['status'], unique=False)
        batch_op.create_index('uq_upload2_publishing_sessions_live_release', ['normalized_name', 'canonical_version'], unique=True, sqlite_where=LIVE, postgresql_where=LIVE)

    op.create_table('upload2_file_upload_sessions',
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
    sa.Column('digest_state', sa.JSON(), nullable=True),
    sa.Column('processing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('requires_python', sa.Text(), nullable=True),
    sa.Column('metadata_sha256', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['publishing_session_id'], ['upload2_publishing_sessions.id'], name=op.f('fk_upload2_file_upload_sessions_publishing_session_id_upload2_publishing_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_file_upload_sessions'))
    )
    with op.batch_alter_table('upload2_file_upload_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload2_file_upload_sessions_publishing_session_id'), ['publishing_session_id'], unique=False)
        batch_op.create_index('uq_upload2_file_upload_sessions_live_filename', ['publishing_session_id', 'filename'], unique=True, sqlite_where=NOT_CANCELED, postgresql_where=NOT_CANCELED)

    op.create_table('upload2_name_reservations',
    sa.Column('normalized_name', sa.String(length=200), nullable=False),
    sa.Column('principal_key', sa.String(length=64), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('normalized_name', name=op.f('pk_upload2_name_reservations'))
    )


def downgrade():
    op.drop_table('upload2_name_reservations')
    op.drop_table('upload2_file_upload_sessions')
    op.drop_table('upload2_publishing_sessions')
