"""What a process knows of the multipart uploads it appended to (storage/known.py)."""

from pypi_upload2.storage.known import KnownUploads


def test_an_entry_serves_only_the_offset_its_append_ended_at():
    known = KnownUploads()
    known.remember("k", "upload-1", 2, 10)
    assert known.at("k", 10) == ("upload-1", 2)
    assert known.at("k", 5) is None  # another host appended, or this append did not commit
    assert known.at("other", 10) is None
    known.forget("k")
    assert known.at("k", 10) is None


def test_the_least_recently_used_entries_go_past_the_capacity():
    known = KnownUploads(capacity=2)
    known.remember("a", "1", 1, 1)
    known.remember("b", "2", 1, 1)
    assert known.at("a", 1) == ("1", 1)  # used: "b" is now the oldest
    known.remember("c", "3", 1, 1)
    assert known.at("b", 1) is None
    assert known.at("a", 1) == ("1", 1) and known.at("c", 1) == ("3", 1)
