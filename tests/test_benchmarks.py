"""The benchmark's schedule (the benchmarks themselves run under `make bench`, not here)."""

from benchmarks.training import runs_in_repeat


def test_reference_runs_are_spread_over_the_repeats_and_one_epoch_runs_are_in_each():
    assert [r for r in range(5) if runs_in_repeat(r, 5, 3, 50)] == [0, 2, 4]
    assert [r for r in range(5) if runs_in_repeat(r, 5, 0, 50)] == [0]
    assert [r for r in range(5) if runs_in_repeat(r, 5, 2, 50)] == [0, 4]
    assert [r for r in range(3) if runs_in_repeat(r, 3, 3, 50)] == [0, 1, 2]
    assert [r for r in range(5) if runs_in_repeat(r, 5, 0, 1)] == [0, 1, 2, 3, 4]
