"""The state tables match the PEP's "Publishing Session States" and "File Upload Session
States" tables, transcribed here independently of ``pypi_upload2.states``."""

from __future__ import annotations

import itertools
import types

import pytest

from pypi_upload2 import states
from pypi_upload2.problems import Conflict
from pypi_upload2.states import FileStatus as F, PublishingStatus as P

# Publishing session events: "edit" = a file is uploaded, replaced or deleted; "publish" =
# publish completed immediately (201); "defer" = publish accepted for processing (202);
# "succeed"/"fail" = deferred processing resolves; "cancel" = DELETE of the session.
PUBLISHING_EVENTS = ("edit", "publish", "defer", "succeed", "fail", "cancel")
PUBLISHING = {
    (P.OPEN, "edit"): P.OPEN,
    (P.OPEN, "publish"): P.PUBLISHED,
    (P.OPEN, "defer"): P.PROCESSING,
    (P.OPEN, "cancel"): P.CANCELED,
    (P.PROCESSING, "succeed"): P.PUBLISHED,
    (P.PROCESSING, "fail"): P.ERROR,
    # "error" permits exactly the operations of "open"; a retried publish goes to either.
    (P.ERROR, "edit"): P.ERROR,
    (P.ERROR, "publish"): P.PUBLISHED,
    (P.ERROR, "defer"): P.PROCESSING,
    (P.ERROR, "cancel"): P.CANCELED,
}

# File events: "transfer" = the mechanism moves bytes; "complete" = completed at once (201);
# "defer" = completion accepted for processing (202); "fail" = completion fails (synchronously
# from pending, or deferred from processing); "succeed" = deferred processing succeeds;
# "cancel" = DELETE of the file; "discard" = the publishing session is canceled, which the PEP
# says must not be refused even while a file is processing.
FILE_EVENTS = ("transfer", "complete", "defer", "succeed", "fail", "cancel", "discard")
FILES = {
    (F.PENDING, "transfer"): F.PENDING,
    (F.PENDING, "complete"): F.COMPLETED,
    (F.PENDING, "defer"): F.PROCESSING,
    (F.PENDING, "fail"): F.ERROR,
    (F.PENDING, "cancel"): F.CANCELED,
    (F.PROCESSING, "succeed"): F.COMPLETED,
    (F.PROCESSING, "fail"): F.ERROR,
    (F.COMPLETED, "cancel"): F.CANCELED,
    (F.ERROR, "cancel"): F.CANCELED,
    **{(status, "discard"): F.CANCELED for status in (F.PENDING, F.PROCESSING, F.COMPLETED, F.ERROR)},
}

CASES = [
    *[(states.publishing, status, event, PUBLISHING.get((status, event)))
      for status, event in itertools.product(P, PUBLISHING_EVENTS)],
    *[(states.file_upload, status, event, FILES.get((status, event)))
      for status, event in itertools.product(F, FILE_EVENTS)],
]


def _id(case):
    move, status, event, to = case
    return f"{move.__name__}:{status}-{event}->{to or 409}"


def test_the_status_values_are_the_peps():
    assert [s.value for s in P] == ["open", "processing", "published", "error", "canceled"]
    assert [s.value for s in F] == ["pending", "processing", "completed", "error", "canceled"]
    assert states.LIVE_PUBLISHING == (P.OPEN, P.PROCESSING, P.ERROR)
    assert states.TERMINAL_PUBLISHING == (P.PUBLISHED, P.CANCELED)


def test_the_tables_hold_exactly_the_peps_transitions():
    assert states.PUBLISHING_TRANSITIONS == PUBLISHING
    assert states.FILE_TRANSITIONS == FILES


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_each_transition_is_applied_or_refused_with_409(case):
    move, status, event, to = case
    obj = types.SimpleNamespace(status=status)
    if to is None:
        with pytest.raises(Conflict) as refused:
            move(obj, event)
        assert refused.value.status == 409
        body = refused.value.body()
        assert body["status"] == 409
        assert body["errors"] == [{"source": "status", "message": body["detail"]}]
        assert str(status) in body["detail"]
        assert obj.status == status
    else:
        assert move(obj, event) == to
        assert obj.status == to


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_dry_run_checks_without_changing_anything(case):
    move, status, event, to = case
    obj = types.SimpleNamespace(status=status)
    if to is None:
        with pytest.raises(Conflict):
            move(obj, event, dry_run=True)
    else:
        assert move(obj, event, dry_run=True) == to
    assert obj.status == status


@pytest.mark.parametrize("status", [P.PUBLISHED, P.CANCELED])
def test_terminal_publishing_states_refuse_every_event(status):
    for event in PUBLISHING_EVENTS:
        with pytest.raises(Conflict):
            states.publishing(types.SimpleNamespace(status=status), event)


def test_only_canceled_is_terminal_for_a_file():
    for status in F:
        allowed = [e for e in FILE_EVENTS if (status, e) in FILES]
        assert bool(allowed) == (status != F.CANCELED), status


@pytest.mark.parametrize("move, status, event, reason", [
    (states.publishing, P.PROCESSING, "cancel", "The publishing session is processing: a publish of it is in progress."),
    (states.publishing, P.CANCELED, "edit", "The publishing session is canceled: no further changes are possible."),
    (states.publishing, P.ERROR, "succeed", "The publishing session is error: 'succeed' is not possible in this state."),
    (states.file_upload, F.PROCESSING, "cancel",
     "The file upload session is processing: it is being processed; wait until it is completed or in error."),
    (states.file_upload, F.ERROR, "complete", "The file upload session is error: the upload failed; delete the file"),
    (states.file_upload, F.CANCELED, "cancel", "The file upload session is canceled: no further changes are possible."),
])
def test_a_refusal_says_why_for_its_own_kind_of_session(move, status, event, reason):
    # The enums share values ("processing", "error", "canceled"): a publishing session
    # must never be given a file's reason, nor the other way round.
    with pytest.raises(Conflict) as refused:
        move(types.SimpleNamespace(status=status), event)
    assert refused.value.detail.startswith(reason)
