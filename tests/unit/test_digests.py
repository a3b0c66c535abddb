"""Resumable digests: a state stored after any number of bytes resumes to the digest
hashlib gives for the whole, for each algorithm rehashes can serialize."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from pypi_upload2.services import digests
from pypi_upload2.services.digests import ResumableDigests

pytestmark = pytest.mark.skipif(digests.rehashes is None, reason="rehashes is not installed (Linux only)")

DATA = os.urandom(300_001)


@pytest.mark.parametrize("cuts", [(0,), (1, 64, 65), (4096, 200_000), (299_999,)])
def test_a_stored_state_resumes_to_the_whole_files_digests(cuts):
    resumed, start = ResumableDigests.start(["sha512", "sha1", "md5"]), 0
    for cut in (*cuts, len(DATA)):
        for hasher in resumed.hashers.values():
            hasher.update(DATA[start:cut])
        # Through JSON, as the database column keeps it.
        resumed = ResumableDigests.resume(json.loads(json.dumps(resumed.state())))
        start = cut
    assert resumed.hexdigests() == {name: hashlib.new(name, DATA).hexdigest()
                                    for name in ("sha256", "sha512", "sha1", "md5")}


def test_sha256_is_always_kept_and_other_algorithms_mean_no_resumable_digests():
    assert set(ResumableDigests.start([]).hashers) == {"sha256"}
    assert ResumableDigests.start(["sha256", "blake2b"]) is None
    assert ResumableDigests.start(["sha3_256"]) is None


@pytest.mark.parametrize("state", [None, {}, {"sha256": "not base64!"}, {"sha256": "AAAA"}, {"blake2b": "AAAA"},
                                   {"sha256": 42}])
def test_a_state_this_server_cannot_read_gives_none(state):
    assert ResumableDigests.resume(state) is None


def test_without_rehashes_there_are_no_resumable_digests(monkeypatch):
    state = ResumableDigests.start([]).state()
    monkeypatch.setattr(digests, "rehashes", None)
    assert ResumableDigests.start([]) is None
    assert ResumableDigests.resume(state) is None
