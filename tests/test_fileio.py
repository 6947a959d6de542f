"""``fileio``: what it promises about files on disk."""

from __future__ import annotations

import os

from nnc_tools.fileio import link_if_identical


def test_an_identical_copy_becomes_a_hard_link_and_a_different_one_stays(tmp_path):
    best, last = tmp_path / "results.nnp", tmp_path / "results_current.nnp"
    best.write_bytes(b"x" * 1000)
    last.write_bytes(b"x" * 1000)
    assert link_if_identical(last, best)
    assert os.path.samefile(last, best) and last.read_bytes() == b"x" * 1000
    assert link_if_identical(last, best)  # already one file
    other = tmp_path / "other.nnp"
    other.write_bytes(b"x" * 999 + b"y")
    assert not link_if_identical(other, best)
    assert not os.path.samefile(other, best) and other.read_bytes().endswith(b"y")
    assert not link_if_identical(tmp_path / "missing.nnp", best)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.nnp", "results.nnp", "results_current.nnp"]
