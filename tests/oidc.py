"""A local OIDC issuer for Trusted Publishing tests: a test key pair, its JWKS and OpenID
configuration served on loopback, GitHub- and GitLab-shaped JWTs; and a fake GitHub Actions
token service that answers ``ACTIONS_ID_TOKEN_REQUEST_URL`` as a runner does."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
import urllib.parse
import uuid

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa

from pypi_upload2.builtin.models import Project, Role, TrustedPublisher, User


class Issuer:
    def __init__(self, kid: str = "test-key-1"):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        self.url = ""  # set once served
        self.jwks_requests = 0
        self.actions_token = uuid.uuid4().hex  # what the fake runner hands its jobs
        self.actions_claims: dict = {}  # claims of the tokens the runner service mints

    def jwks(self) -> dict:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def token(self, audience: str = "pypi-upload2", *, key=None, kid: str | None = None, lifetime: int = 300,
              now: float | None = None, **claims) -> str:
        now = time.time() if now is None else now
        body = {"iss": self.url, "aud": audience, "iat": int(now), "nbf": int(now) - 5, "exp": int(now) + lifetime,
                "jti": uuid.uuid4().hex, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})

    def github(self, repository: str, workflow: str, *, environment: str | None = None, ref: str = "refs/tags/v1",
               **kw) -> str:
        return self.token(**github_claims(repository, workflow, environment=environment, ref=ref), **kw)

    def gitlab(self, project_path: str, ci_file: str, *, environment: str | None = None, ref: str = "refs/tags/v1",
               **kw) -> str:
        return self.token(sub=f"project_path:{project_path}:ref_type:tag:ref:v1", project_path=project_path,
                          namespace_path=project_path.rsplit("/", 1)[0],
                          ci_config_ref_uri=f"gitlab.com/{project_path}//{ci_file}@{ref}", ref_path=ref,
                          environment=environment, **kw)


def github_claims(repository: str, workflow: str, *, environment: str | None = None,
                  ref: str = "refs/tags/v1") -> dict:
    """The claims of a GitHub Actions OIDC token of a run of ``workflow`` in ``repository``."""
    workflow_ref = f"{repository}/.github/workflows/{workflow}@{ref}"
    return {"sub": f"repo:{repository}:ref:{ref}", "repository": repository,
            "repository_owner": repository.split("/")[0], "workflow_ref": workflow_ref,
            "job_workflow_ref": workflow_ref, "ref": ref, "sha": "0" * 40, "environment": environment,
            "event_name": "push", "runner_environment": "github-hosted"}


def actions_env(issuer: Issuer) -> dict:
    """The environment of a GitHub Actions job with ``id-token: write``, its runner's token
    service being ``issuer``'s."""
    return {"GITHUB_ACTIONS": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": f"{issuer.url}/actions/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": issuer.actions_token}


class _Handler(http.server.BaseHTTPRequestHandler):
    issuer: Issuer

    def log_message(self, *args):
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        issuer = self.issuer
        if url.path == "/.well-known/openid-configuration":
            self._json(200, {"issuer": issuer.url, "jwks_uri": issuer.url + "/.well-known/jwks"})
        elif url.path == "/.well-known/jwks":
            issuer.jwks_requests += 1
            self._json(200, issuer.jwks())
        elif url.path == "/actions/token":
            # As a runner's token service: the job's bearer token, an audience, a fresh JWT.
            scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or value != issuer.actions_token:
                self._json(401, {"message": "bad runner token"})
                return
            audience = urllib.parse.parse_qs(url.query).get("audience", ["sigstore"])[0]
            self._json(200, {"count": 1, "value": issuer.token(audience, **issuer.actions_claims)})
        else:
            self._json(404, {})


@contextlib.contextmanager
def serve(issuer: Issuer):
    """Serve ``issuer`` on a loopback port (its ``url`` set) for the duration."""
    handler = type("Handler", (_Handler,), {"issuer": issuer})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


def add_publisher(dbsession, project_name: str, *, kind="github", repository="octo/foo", workflow="release.yml",
                  environment="", user="alice", pending=False) -> int:
    owner = dbsession.scalar(sa.select(User).where(User.username == user))
    if owner is None:
        owner = User(username=user)
        dbsession.add(owner)
        dbsession.flush()
    project = None
    if not pending:
        project = dbsession.scalar(sa.select(Project).where(Project.normalized_name == project_name))
        if project is None:
            project = Project(name=project_name, normalized_name=project_name)
            dbsession.add(project)
            dbsession.flush()
            dbsession.add(Role(project_id=project.id, user_id=owner.id, role_name="Owner"))
    publisher = TrustedPublisher(project_id=project.id if project else None, project_name=project_name, user=owner,
                                 kind=kind, repository=repository, workflow=workflow, environment=environment)
    dbsession.add(publisher)
    dbsession.commit()
    return publisher.id


def mint(app, jwt_text: str, status: int = 200):
    return app.post_json("/_/oidc/mint-token", {"token": jwt_text}, status=status)
