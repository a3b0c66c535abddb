"""the built-in index in prefixed tables beside the plugin's sessions; data carried over

Before this revision one schema held the index and the sessions in unprefixed tables (users,
projects, releases, ...), which collide with a host's own. This revision creates the built-in
index's ``upload2_*`` tables, carries every row over (sessions into the ``core`` branch's
tables), and drops the old ones:

- a registered project, its roles, its published releases and files carry over as they are;
- a project only reserved by a first-release session becomes a name reservation of its owner;
- a filename reserved by a deferred publish in progress stays reserved (``upload2_filenames``);
- a session's ``ended_at`` while processing becomes ``processing_since``, and a file's
  ``received_at`` while processing likewise.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa
from packaging.utils import canonicalize_name, canonicalize_version

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = 'c0001'

SDIST = sa.text("packagetype = 'sdist'")
OLD = ['file_upload_sessions', 'release_files', 'publishing_sessions', 'roles', 'releases', 'api_tokens',
       'projects', 'users']


def _create_index_tables():
    op.create_table('upload2_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=100), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_users')),
    sa.UniqueConstraint('username', name=op.f('uq_upload2_users_username'))
    )
    op.create_table('upload2_api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['upload2_users.id'], name=op.f('fk_upload2_api_tokens_user_id_upload2_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_api_tokens'))
    )
    with op.batch_alter_table('upload2_api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload2_api_tokens_user_id'), ['user_id'], unique=False)
    op.create_table('upload2_projects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('normalized_name', sa.String(length=200), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_projects')),
    sa.UniqueConstraint('normalized_name', name=op.f('uq_upload2_projects_normalized_name'))
    )
    op.create_table('upload2_roles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role_name', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['upload2_projects.id'], name=op.f('fk_upload2_roles_project_id_upload2_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['upload2_users.id'], name=op.f('fk_upload2_roles_user_id_upload2_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_roles')),
    sa.UniqueConstraint('project_id', 'user_id', name=op.f('uq_upload2_roles_project_id'))
    )
    with op.batch_alter_table('upload2_roles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload2_roles_user_id'), ['user_id'], unique=False)
    op.create_table('upload2_releases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('canonical_version', sa.String(length=100), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['upload2_projects.id'], name=op.f('fk_upload2_releases_project_id_upload2_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_releases')),
    sa.UniqueConstraint('project_id', 'canonical_version', name=op.f('uq_upload2_releases_project_id'))
    )
    op.create_table('upload2_release_files',
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
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('publishing_session_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['publishing_session_id'], ['upload2_publishing_sessions.id'], name=op.f('fk_upload2_release_files_publishing_session_id_upload2_publishing_sessions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['release_id'], ['upload2_releases.id'], name=op.f('fk_upload2_release_files_release_id_upload2_releases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload2_release_files')),
    sa.UniqueConstraint('filename', name=op.f('uq_upload2_release_files_filename'))
    )
    with op.batch_alter_table('upload2_release_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload2_release_files_publishing_session_id'), ['publishing_session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_upload2_release_files_release_id'), ['release_id'], unique=False)
        batch_op.create_index('uq_upload2_release_files_one_sdist', ['release_id'], unique=True, sqlite_where=SDIST, postgresql_where=SDIST)
    op.create_table('upload2_filenames',
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('filename', name=op.f('pk_upload2_filenames'))
    )


def _rows(conn, table: str, *columns: str) -> list[dict]:
    # Through reflected tables, so that JSON columns come back decoded on every backend.
    old = sa.Table(table, sa.MetaData(), autoload_with=conn)
    query = sa.select(*[old.c[c] for c in columns]) if columns else sa.select(old)
    return [dict(row._mapping) for row in conn.execute(query)]


def _insert(conn, table: str, rows: list[dict]) -> None:
    if rows:
        target = sa.Table(table, sa.MetaData(), autoload_with=conn)
        conn.execute(target.insert(), rows)


def _carry_over(conn):
    projects = {p['id']: p for p in _rows(conn, 'projects')}
    registered = {i for i, p in projects.items() if p['registered_at'] is not None}
    roles = _rows(conn, 'roles')
    releases = _rows(conn, 'releases')
    files = _rows(conn, 'release_files')
    published_releases = {r['id'] for r in releases if r['published'] and r['project_id'] in registered}
    _insert(conn, 'upload2_users', _rows(conn, 'users', 'id', 'username', 'created'))
    _insert(conn, 'upload2_api_tokens', _rows(conn, 'api_tokens', 'id', 'user_id', 'digest', 'created'))
    _insert(conn, 'upload2_projects', [{k: p[k] for k in ('id', 'name', 'normalized_name', 'created')}
                                       for i, p in projects.items() if i in registered])
    _insert(conn, 'upload2_roles', [r for r in roles if r['project_id'] in registered])
    # A reserved name: held by the owner its first session made.
    owners = {r['project_id']: str(r['user_id']) for r in roles if r['role_name'] == 'Owner'}
    _insert(conn, 'upload2_name_reservations', [
        {'normalized_name': p['normalized_name'], 'principal_key': owners.get(i, ''), 'created': p['created']}
        for i, p in projects.items() if i not in registered])
    _insert(conn, 'upload2_releases', [
        {'id': r['id'], 'project_id': r['project_id'], 'version': r['version'],
         'canonical_version': r['canonical_version'], 'published_at': r['published_at'] or r['created']}
        for r in releases if r['id'] in published_releases])
    sessions = _rows(conn, 'publishing_sessions')
    versions = {r['id']: r['canonical_version'] for r in releases}
    _insert(conn, 'upload2_publishing_sessions', [
        {'id': s['id'], 'token': s['token'], 'token_digest': s['token_digest'], 'name': s['name'],
         'normalized_name': projects[s['project_id']]['normalized_name'] if s['project_id'] in projects
         else canonicalize_name(s['name']),
         'version': s['version'],
         'canonical_version': versions.get(s['release_id']) or canonicalize_version(s['version']),
         'created_by': str(s['created_by_id'] or ''), 'status': s['status'], 'notices': s['notices'],
         'created': s['created'], 'expires_at': s['expires_at'],
         'processing_since': s['ended_at'] if s['status'] == 'processing' else None,
         'ended_at': s['ended_at'] if s['status'] in ('published', 'canceled') else None}
        for s in sessions])
    uploads = _rows(conn, 'file_upload_sessions')
    _insert(conn, 'upload2_file_upload_sessions', [
        {**u, 'processing_since': u['received_at'] if u['status'] == 'processing' else None} for u in uploads])
    _insert(conn, 'upload2_release_files', [
        {k: f[k] for k in ('id', 'release_id', 'filename', 'packagetype', 'size', 'sha256', 'requires_python',
                           'blob_key', 'metadata_sha256', 'uploaded_at', 'published_at', 'publishing_session_id')}
        for f in files if f['published_at'] is not None and f['release_id'] in published_releases])
    # Every filename ever used stays used; a deferred publish's reservations stay held.
    _insert(conn, 'upload2_filenames', [{'filename': f['filename'], 'created': f['uploaded_at']} for f in files])
    if conn.dialect.name == 'postgresql':
        for table in ('upload2_users', 'upload2_api_tokens', 'upload2_projects', 'upload2_roles', 'upload2_releases',
                      'upload2_release_files', 'upload2_publishing_sessions', 'upload2_file_upload_sessions'):
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"))


def upgrade():
    _create_index_tables()
    _carry_over(op.get_bind())
    for table in OLD:
        op.drop_table(table)


def downgrade():
    raise RuntimeError("revision 0004 moved the data into new tables; restore the database backup "
                       "taken before the upgrade to go back (docs/deployment.md)")
