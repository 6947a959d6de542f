"""Training in phases (train --phases): equal to the same phases done by hand (train, apply the next overlay, go on
with the solver states), resumable bit-identically across a phase boundary, checked before anything trains."""

from __future__ import annotations

import shutil

import pytest

from nnc_tools.project.freeze import apply_freeze
from nnc_tools.training.train import TrainingRun, TrainOptions, train

from .conftest import assert_refused, params_of, tiny_project

PHASES = ("phases:\n"
          "  - epochs: 1\n    rules:\n      - up_to: BatchNormalization\n        multiplier: 0\n"
          "  - epochs: 2\n    rules:\n      - match: '*'\n        params: [W, b, beta, gamma]\n        multiplier: 1\n")


@pytest.fixture
def setup(tmp_path):
    project = tiny_project(tmp_path, epochs=3)
    phases = tmp_path / "phases.yaml"
    phases.write_text(PHASES)
    return project, phases


def test_two_phases_equal_the_two_phases_done_by_hand(tmp_path, setup):
    project, phases = setup
    run = train(project, tmp_path / "phased", TrainOptions(progress=False, workers=1, phases=phases))
    assert [r.phase for r in run.history] == [1, 2, 2]
    # by hand: the first overlay for one epoch, then the second overlay on the project as given, resumed from there
    (tmp_path / "one.yaml").write_text("rules:\n  - up_to: BatchNormalization\n    multiplier: 0\n")
    (tmp_path / "two.yaml").write_text("rules:\n  - match: '*'\n    params: [W, b, beta, gamma]\n    multiplier: 1\n")
    first, second = tmp_path / "p1.nnp", tmp_path / "p2.nnp"
    apply_freeze(project, tmp_path / "one.yaml", first)
    apply_freeze(project, tmp_path / "two.yaml", second)
    train(first, tmp_path / "hand", TrainOptions(progress=False, workers=1, epochs=1))
    train(second, tmp_path / "hand", TrainOptions(progress=False, workers=1, epochs=3, resume=True))
    a, b = params_of(tmp_path / "phased" / "results_current.nnp"), params_of(tmp_path / "hand" / "results_current.nnp")
    for name in a:
        assert a[name].data == pytest.approx(b[name].data, abs=1e-6), name
    before = params_of(project)
    after_one = params_of(tmp_path / "hand" / "results_current.nnp")
    assert before["Convolution/conv/W"].data.tobytes() != after_one["Convolution/conv/W"].data.tobytes()  # phase 2 trains it


class Killed(BaseException):
    """Stands for the process being killed after an epoch was saved."""


def test_resume_across_the_phase_boundary_is_bit_identical(tmp_path, setup, monkeypatch):
    project, phases = setup
    train(project, tmp_path / "full", TrainOptions(progress=False, workers=1, phases=phases))
    real = TrainingRun._save

    def save_then_die(self, epoch, record):
        real(self, epoch, record)
        if epoch == 1:
            raise Killed()

    monkeypatch.setattr(TrainingRun, "_save", save_then_die)
    with pytest.raises(Killed):
        train(project, tmp_path / "cut", TrainOptions(progress=False, workers=1, phases=phases))
    monkeypatch.setattr(TrainingRun, "_save", real)
    train(project, tmp_path / "cut", TrainOptions(progress=False, workers=1, phases=phases, resume=True))
    a, b = params_of(tmp_path / "full" / "results_current.nnp"), params_of(tmp_path / "cut" / "results_current.nnp")
    assert {k: v.data.tobytes() for k, v in a.items()} == {k: v.data.tobytes() for k, v in b.items()}
    assert (tmp_path / "full" / "training_log.csv").read_text().splitlines()[-1].split(",")[-1] == "2"


def test_results_carry_the_last_phases_multipliers(tmp_path, setup):
    from nnc_tools.formats.nnp import load_project, multipliers

    project, phases = setup
    train(project, tmp_path / "r", TrainOptions(progress=False, workers=1, phases=phases))
    m = multipliers(load_project(tmp_path / "r" / "results.nnp").proto.optimizer[0])
    assert m["Convolution/conv/W"] == 1 and m["BatchNormalization/bn/mean"] == 0


@pytest.mark.parametrize("text, flags, message", [
    (PHASES, ["--epochs", "5"], "its phases take 3 epochs; --epochs 5 says otherwise"),
    ("phases:\n  - epochs: 1\n    freeze: [Nothing]\n", [], "phases[0]: freeze[0]: match 'Nothing' matches nothing"),
    ("phases:\n  - epochs: 0\n    freeze: [Affine]\n", [], "phases[0].epochs: expected a whole number from 1"),
    ("phases:\n  - epochs: 1\n    lr_scale: -1\n    freeze: [Affine]\n", [], "phases[0].lr_scale: expected a finite number > 0"),
    ("freeze: [Affine]\nphases:\n  - epochs: 1\n    freeze: [Affine]\n", [], "give every rule inside a phase"),
    ("freeze: [Affine]\n", [], "has no 'phases'"),
])
def test_phase_mistakes_are_one_line_before_anything_trains(cli, tmp_path, setup, text, flags, message):
    project, phases = setup
    phases.write_text(text)
    result = cli("train", project, "-o", tmp_path / "r", "--phases", phases, *flags)
    assert_refused(result, message)
    assert not (tmp_path / "r").exists()


def test_resume_needs_the_same_phases(cli, tmp_path, setup):
    project, phases = setup
    assert cli("train", project, "-o", tmp_path / "r", "--phases", phases, "--workers", "1").code == 0
    result = cli("train", project, "-o", tmp_path / "r", "--resume")
    assert result.code == 2 and "the run was trained in phases" in result.err
    other = tmp_path / "other.yaml"
    shutil.copy(phases, other)
    other.write_text(PHASES.replace("epochs: 2", "epochs: 3"))
    result = cli("train", project, "-o", tmp_path / "r", "--resume", "--phases", other)
    assert result.code == 2 and "the run was trained in phases" in result.err


def test_apply_freeze_on_a_phased_overlay_applies_the_first_phase(cli, tmp_path, setup):
    project, phases = setup
    result = cli("apply-freeze", project, "-c", phases, "-o", tmp_path / "f.nnp")
    assert result.code == 0 and "has 2 phases: applied the first" in result.err


def test_cache_frozen_on_is_checked_for_every_phase_before_training(cli, tmp_path, setup):
    project, phases = setup
    result = cli("train", project, "-o", tmp_path / "r", "--phases", phases, "--cache-frozen", "on")
    assert result.code == 2 and "phases[1]: --cache-frozen on, but it has no frozen prefix" in result.err, result.err
    assert not (tmp_path / "r").exists()
