"""benchmarks/s3.py, shortened: one small size, one run of each kind against moto's server,
then its checks (the sha256 each server recorded, the size of each stored object, nothing
left in the bucket). No timing is asserted: the figures are the benchmark's."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import s3
    finally:
        sys.path.remove(str(BENCHMARKS))
    return s3


def test_the_s3_benchmark_runs_its_three_kinds_and_leaves_nothing(bench, tmp_path):
    output = tmp_path / "s3.json"
    code = bench.main(["--sizes", "6", "--chunk", "5", "--runs", "1", "--workers", "1", "--cold",
                       "--tmpdir", str(tmp_path), "--output", str(output)])
    document = json.loads(output.read_text())
    assert document["problems"] == [] and code in (0, 1)  # 1: a target not met on this machine
    [result] = document["results"].values()
    assert {len(seconds) for seconds in result["seconds"].values()} == {1}
    assert set(result["peak_rss_mib"]) == {"post", "resumable"}
    assert set(document["verdict"]) == {"post_ratio", "resumable_ratio", "rss_growth_mib", "rss"}
