"""Ids from URLs and tokens: every id the columns can hold, and nothing else."""

from __future__ import annotations

import pytest

from pypi_upload2.db import MAX_ID, parse_id


@pytest.mark.parametrize("text", ["0", "1", "999999999", "1000000000", "1500000000", str(MAX_ID), "0042"])
def test_every_id_the_columns_hold_is_one(text):
    assert parse_id(text) == int(text)


@pytest.mark.parametrize("text", ["", "-1", "+1", " 1", "1 ", "abc", "1e3", "²", "١٢", str(MAX_ID + 1),
                                  "99999999999", "9" * 30])
def test_anything_else_names_nothing(text):
    assert parse_id(text) is None
