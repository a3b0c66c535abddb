"""PEP 740 attestations of a file: posted before its completion (the ``attestations_url`` of
``http-post-bytes`` and the resumable mechanism, or a legacy upload's ``attestations`` field),
kept with the trusted publisher that minted the poster's credential, verified when the file
is completed, and served as the file's provenance object once it is completed.

Only a credential a trusted publisher minted may attest (the host's ``ITrustedPublishing``):
the attestation's Sigstore certificate must name that publisher's workflow, as on PyPI.
"""

from __future__ import annotations

import json
import logging

import pydantic
import sqlalchemy as sa

from ..interfaces import ITrustedPublishing
from ..models import Attestation, FileUploadSession
from ..problems import BadRequest, ContentTooLarge
from .jsonbody import parse_json

log = logging.getLogger(__name__)

# The predicates PyPI accepts, at most one attestation of each per file.
PUBLISH_V1 = "https://docs.pypi.org/attestations/publish/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
PREDICATE_TYPES = (PUBLISH_V1, SLSA_PROVENANCE_V1)
SOURCE = "attestations"


def publisher(request, principal) -> dict:
    """The trusted publisher whose token ``principal`` authenticated with; a 400 problem when
    none minted it (or the host has no Trusted Publishing), as PyPI answers."""
    try:
        found = request.find_service(ITrustedPublishing).publisher(request, principal)
    except LookupError:
        found = None
    if found is None:
        raise BadRequest("Attestations need Trusted Publishing",
                         "Attestations are only accepted from a token minted by a trusted publisher: the "
                         "attestation's signature names a CI workflow, and this credential names none.",
                         source=SOURCE)
    return found


def parse(request, raw) -> list[dict]:
    """The JSON array of attestation objects ``raw`` (text or an already parsed value), each
    checked for its shape; a 400 problem naming what is wrong, 413 past the size limit."""
    limit = request.registry["upload2.settings"].max_attestations_size
    if isinstance(raw, (str, bytes)):
        if len(raw) > limit:
            raise ContentTooLarge("Attestations too large", f"The attestations may be at most {limit} bytes.",
                                  source=SOURCE)
        raw = parse_json(raw.encode() if isinstance(raw, str) else raw)
    if not isinstance(raw, list) or not raw or not all(isinstance(a, dict) for a in raw):
        raise BadRequest("Invalid attestations", "Send a non-empty JSON array of PEP 740 attestation objects.",
                         source=SOURCE)
    if len(raw) > len(PREDICATE_TYPES):
        raise BadRequest("Too many attestations", f"A file has at most one attestation per predicate type "
                         f"({', '.join(PREDICATE_TYPES)}); {len(raw)} were sent.", source=SOURCE)
    from pypi_attestations import Attestation as Model

    for number, body in enumerate(raw, 1):
        try:
            Model.model_validate(body)
        except pydantic.ValidationError as exc:
            raise BadRequest("Invalid attestation", f"Attestation {number} is not a PEP 740 attestation object: "
                             f"{_first_error(exc)}.", source=f"{SOURCE}[{number - 1}]")
    return raw


def _first_error(exc: pydantic.ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(map(str, error['loc'])) or 'the object'}: {error['msg']}"


def store(db, file_session: FileUploadSession, attestations: list[dict], publisher: dict) -> None:
    """Keep ``attestations`` for the file, replacing any posted before."""
    discard(db, file_session)
    db.add_all([Attestation(file_upload_session_id=file_session.id, body=body, publisher=publisher)
                for body in attestations])
    file_session.attested = True
    db.flush()
    db.expire(file_session, ["attestations"])


def discard(db, file_session: FileUploadSession) -> None:
    """Delete the file's attestations (the file is replaced, deleted, or failed)."""
    if not file_session.attested:
        return
    db.execute(sa.delete(Attestation).where(Attestation.file_upload_session_id == file_session.id))
    file_session.attested = False
    db.expire(file_session, ["attestations"])


def verify(file_session: FileUploadSession) -> str | None:
    """Check every attestation of the file against its name and sha256 and the publisher it
    was posted with; None when all hold (or there are none), else why not."""
    if not file_session.attested or not file_session.attestations:
        return None
    from pypi_attestations import Attestation as Model
    from pypi_attestations import AttestationError, Distribution, Publisher

    dist = Distribution(name=file_session.filename, digest=file_session.sha256)
    seen: dict[str, int] = {}
    for number, row in enumerate(file_session.attestations, 1):
        try:
            attestation = Model.model_validate(row.body)
            identity = pydantic.TypeAdapter(Publisher).validate_python(row.publisher)
            predicate_type, _ = attestation.verify(identity, dist, offline=True)
        except (AttestationError, pydantic.ValidationError, ValueError) as exc:
            return (f"Attestation {number} does not verify for {file_session.filename} (sha256 "
                    f"{file_session.sha256}) from {describe(row.publisher)}: {exc}")
        if predicate_type not in PREDICATE_TYPES:
            return f"Attestation {number} has the predicate type {predicate_type}, which this index does not accept."
        if predicate_type in seen:
            return (f"Attestations {seen[predicate_type]} and {number} are both of the predicate type "
                    f"{predicate_type}: a file has at most one of each.")
        seen[predicate_type] = number
    return None


def describe(publisher: dict) -> str:
    workflow = publisher.get("workflow") or publisher.get("workflow_filepath")
    where = f" (environment {publisher['environment']})" if publisher.get("environment") else ""
    return f"the {publisher.get('kind')} publisher {publisher.get('repository')}, {workflow}{where}"


def provenance(file_session: FileUploadSession) -> dict | None:
    """PEP 740's provenance object of the file's attestations: one bundle per publisher."""
    return _provenance(file_session.attestations) if file_session.attested else None


def provenances(db, files: list[FileUploadSession]) -> dict[int, dict]:
    """The provenance object of each of ``files`` that has attestations, by file id: one query
    for all of them (a publish)."""
    rows: dict[int, list[Attestation]] = {}
    attested = [f.id for f in files if f.attested]
    if not attested:
        return {}
    query = sa.select(Attestation).where(Attestation.file_upload_session_id.in_(attested))
    for row in db.scalars(query.order_by(Attestation.id)):
        rows.setdefault(row.file_upload_session_id, []).append(row)
    return {file_id: _provenance(found) for file_id, found in rows.items()}


def _provenance(rows) -> dict | None:
    if not rows:
        return None
    bundles: list[dict] = []
    for row in rows:
        bundle = next((b for b in bundles if b["publisher"] == row.publisher), None)
        if bundle is None:
            bundles.append(bundle := {"publisher": row.publisher, "attestations": []})
        bundle["attestations"].append(row.body)
    return {"version": 1, "attestation_bundles": bundles}


def provenance_json(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
