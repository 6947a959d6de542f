"""`nnc-tl experiment transfer` end to end at the smallest settings: stages, resume, the report and where its numbers come from."""

from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from nnc_tools.errors import NncToolsError
from nnc_tools.experiment.config import load_config
from nnc_tools.experiment.report import write_report
from nnc_tools.experiment.transfer import run_transfer

from .conftest import assert_refused


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "o.yaml").write_text("rules:\n  - up_to: BatchNormalization_3\n    multiplier: 0\n")
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "network: resnet20\nsource_recipe: cifar10\ntarget_recipe: cifar100-aquatic\noverlay: o.yaml\n"
        "source_epochs: 1\ntarget_epochs: 2\nbatch_size: 8\nsolver: Momentum\nlr: 0.01\nseeds: 2\n"
        "synthetic_per_class: {source: 8, target: 5}\n"
    )
    return path


def said(messages) -> str:
    """What the library reported since the last call."""
    text = messages.text
    messages.clear()
    return text


def stage_times(run: Path):
    return {p: p.stat().st_mtime_ns for p in run.rglob("stage.json")}


@pytest.mark.slow
def test_transfer_experiment_end_to_end_and_resume(tmp_path, config_file, messages, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Path("run")  # relative, as `make demo` passes it
    config = load_config(config_file)
    report = run_transfer(run, config, synthetic=True)
    out = said(messages)
    for stage in ("data/source", "data/target", "source", "scratch-s0", "transfer-s0", "scratch-s1", "transfer-s1"):
        assert (run / stage / "stage.json").is_file(), stage
    transfer = json.loads((run / "transfer-s0" / "stage.json").read_text())["summary"]
    scratch = json.loads((run / "scratch-s0" / "stage.json").read_text())["summary"]
    assert transfer["frozen_parameter_values"] > 0 and scratch["frozen_parameter_values"] == 0
    assert "[experiment] transfer (seed 1)" in out

    page = report.read_text()
    assert page.count("data:image/png;base64,") == 5  # learning curves + every run's confusion matrix, embedded
    assert not re.search(r'src="(?!data:)', page)
    md = (run / "report.md").read_text()
    assert "| from scratch | 2 |" in md and " ± " not in md  # two seeds: both values, no standard deviation
    assert "**Data: synthetic.**" in md and "**Test set:** 10 images" in md and "Another setup's numbers" in md
    assert "| from scratch | 1 |" in md  # the per-seed table
    assert "transfer-s1" in md and "overlay:" in md  # the settings each stage ran with

    # a finished stage keeps what a user reads, not what only a resume needs (the checkpoint, the decoded caches)
    assert not list(run.glob("*/result/checkpoint.zip")) and not list(run.glob("*/cache")) and not list(run.glob("*/result/cache"))
    assert all((run / stage / "result" / "results.nnp").is_file() for stage in ("source", "scratch-s0", "transfer-s1"))

    # a re-run finds every stage finished and only rewrites the report
    before = stage_times(run)
    run_transfer(run, config, synthetic=True)
    assert stage_times(run) == before
    assert "[experiment]" not in said(messages)

    # a stage without its record (as if interrupted) is run again, and only that stage
    (run / "transfer-s1" / "stage.json").unlink()
    run_transfer(run, config, synthetic=True)
    out = said(messages)
    assert "transfer (seed 1)" in out and "scratch (seed 0)" not in out and "source:" not in out

    # the table is computed from the runs' own files, not typed in
    for seed in (0, 1):
        stage = run / f"scratch-s{seed}" / "stage.json"
        record = json.loads(stage.read_text())
        record["summary"]["wall_seconds"] = 98765.0
        record["test_accuracy"] = 0.4321
        stage.write_text(json.dumps(record))
    write_report(run, config)
    md = (run / "report.md").read_text()
    assert "98765 s, 98765 s" in md and "43.2 %, 43.2 %" in md

    # a run folder moved elsewhere still makes its report (stage records hold paths relative to their stage)
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)
    shutil.rmtree(run)
    assert write_report(moved, config).is_file()

    # changed settings run the stages they change, and only those
    before = stage_times(moved)
    run_transfer(moved, replace(config, target_epochs=1), synthetic=True)
    out = said(messages)
    after = stage_times(moved)
    assert "its settings changed" in out and "source:" not in out
    assert all(after[p] == before[p] for p in before if "data" in p.parts or "source" in p.parts)
    assert all(after[p] != before[p] for p in before if p.parent.name.startswith(("scratch", "transfer")))
    assert json.loads((moved / "scratch-s0" / "stage.json").read_text())["summary"]["epochs"] == 1


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("network: resnet20\nepochz: 3\n")
    from nnc_tools.errors import NncToolsError

    with pytest.raises(NncToolsError, match="unknown key 'epochz'"):
        load_config(bad)
    config = load_config(None, seeds=3)
    assert config.seeds == 3 and config.network == "mini_vggnet_mark2" and config.target_epochs == 50
    bad.write_text("monitor_interval: 0\n")
    with pytest.raises(NncToolsError, match="monitor_interval"):
        load_config(bad)
    assert config.monitor_interval is None
    assert config.path(config.overlay).is_file()  # the checkout's networks/ overlay


def test_missing_archives_fail_before_anything_is_written(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    result = cli("experiment", "transfer", "-o", tmp_path / "run")
    assert result.code == 2 and "--cifar10" in result.err and "cifar-10-python.tar.gz" in result.err
    assert not (tmp_path / "run").exists()


def _fake_run(folder: Path, kind: str, seed: int, test_accuracy: float, accuracies, losses, test_count: int = 40):
    """A finished run's files as the stages write them, without training anything."""
    from nnc_tools.training.records import EpochRecord, write_reports

    result = folder / "result"
    result.mkdir(parents=True)
    (folder / "test").mkdir()
    history = [EpochRecord(e + 1, 2.0, None, loss, acc, 1.0, 10.0) for e, (acc, loss) in enumerate(zip(accuracies, losses))]
    write_reports(result, history)
    best = min(history, key=lambda r: r.valid_error)
    summary = {"epochs": len(history), "best_epoch": best.epoch, "best_valid_error": best.valid_error,
               "best_valid_accuracy": best.valid_accuracy, "wall_seconds": 12.0, "images_per_second": 10.0,
               "frozen_parameter_values": 0 if kind == "scratch" else 1234, "seed": seed}
    (folder / "test" / "evaluation.json").write_text(json.dumps({"count": test_count, "accuracy": test_accuracy}))
    (folder / "stage.json").write_text(json.dumps({"summary": summary, "test_accuracy": test_accuracy, "result_dir": "result",
                                                    "test_dir": "test", "settings": {"kind": kind, "seed": seed}}))


def test_the_report_states_its_evidence_and_the_paired_differences(tmp_path):
    """From a run folder's own files: the data is said to be synthetic, with sizes; the source model's accuracy; the
    test-set size; mean ± std from 3 seeds; each seed's row; the paired difference from scratch with Student's 95 %
    interval; "lowest validation loss" and "highest validation accuracy" as different things."""
    from scipy.stats import t

    run = tmp_path / "run"
    (run / "data" / "target").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"synthetic": True, "network": "mini_vggnet_mark2", "source_recipe": "cifar10",
                                                 "target_recipe": "cifar100-aquatic", "source_weights": None}))
    (run / "data" / "target" / "stage.json").write_text(json.dumps({
        "counts": {"training": 160, "validation": 40, "test": 40}, "classes": [f"c{k}" for k in range(10)],
        "per_class": {"training": {f"c{k}": 16 for k in range(10)}, "validation": {f"c{k}": 4 for k in range(10)},
                      "test": {f"c{k}": 4 for k in range(10)}}}))
    _fake_run(run / "source", "source", 0, 0.483, [0.40, 0.45], [1.5, 1.4], test_count=100)
    scratch, transfer = [0.30, 0.35, 0.25], [0.50, 0.60, 0.40]
    for seed in range(3):
        _fake_run(run / f"scratch-s{seed}", "scratch", seed, scratch[seed], [0.2, 0.5, 0.3], [2.0, 1.9, 1.8])
        _fake_run(run / f"transfer-s{seed}", "transfer", seed, transfer[seed], [0.4, 0.7, 0.6], [1.5, 1.2, 1.3])
    write_report(run)
    md = (run / "report.md").read_text()
    assert "**Data: synthetic.**" in md
    assert "160 training / 40 validation / 40 test images, 16 / 4 / 4 per class" in md
    assert "validation accuracy 45.0 % at its lowest validation loss (epoch 2), 48.3 % on its 100 test images" in md
    assert "**Test set:** 40 images" in md and "one image is 2.5 points" in md
    assert "| from scratch | 3 | 30.0 % ± 5.0 % | 1.800 ± 0.000 | 3 ± 0 | 30.0 % ± 0.0 % | 50.0 % ± 0.0 % |" in md
    assert "| transfer (frozen layers) | 1 | 60.0 % | 24 / 40 | 1.200 (epoch 2) | 70.0 % | 70.0 % (epoch 2) |" in md
    half = t.ppf(0.975, 2) * 5.0 / 3 ** 0.5  # differences 20, 25, 15 points: mean 20, sd 5
    assert f"| +20.0 points | {20 - half:+.1f} points to {20 + half:+.1f} points (excludes 0) |" in md
    assert "s0: +20.0 points, s1: +25.0 points, s2: +15.0 points" in md
    # the headline says it in words; the title names the arms; ± is defined
    assert md.startswith("# Transfer learning: from scratch vs transfer (frozen layers)\n")
    assert (f"- transfer (frozen layers) is better than from scratch beyond noise: +20.0 points on average, 95 % interval "
            f"{20 - half:+.1f} points to {20 + half:+.1f} points over 3 seeds") in md
    assert "a ± b is the mean ± the standard deviation over the seeds" in md
    # settings once per kind of stage: the seeds share one entry
    assert "scratch-s0, scratch-s1, scratch-s2:\n  kind: scratch\n" in md and md.count("kind: scratch") == 1
    assert "without a GPU" in md and "trained 10 epochs on the real CIFAR-10" in md and "on a GPU;" not in md
    assert (run / "learning_curves.png").stat().st_size > 0


def test_one_seed_gets_no_interval(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"synthetic": False, "source_weights": "/w/source.nnp"}))
    _fake_run(run / "scratch-s0", "scratch", 0, 0.30, [0.2], [2.0])
    _fake_run(run / "transfer-s0", "transfer", 0, 0.40, [0.4], [1.5])
    write_report(run)
    md = (run / "report.md").read_text()
    assert "one seed: no interval" in md and "| 30.0 % |" in md and " ± " not in md
    assert "**Data: real**" in md and "the weights in `/w/source.nnp`" in md


def test_reference_config_matches_the_published_setup():
    """experiments/transfer.yaml: source 10 epochs, target 50, batch 64, W and b of Convolution ... Convolution_6 at 0
    and their Batch Normalization trained."""
    import yaml

    config = load_config(Path(__file__).resolve().parents[1] / "experiments" / "transfer.yaml")
    assert (config.source_epochs, config.target_epochs, config.batch_size) == (10, 50, 64)
    overlay = yaml.safe_load(config.path(config.overlay).read_text())
    assert overlay == {"rules": [{"up_to": "Convolution_6", "params": ["W", "b"], "multiplier": 0}]}


@pytest.mark.slow
def test_transfer_experiment_from_the_users_own_project(tmp_path, monkeypatch, messages):
    """--source-project: no source data or pretraining; both arms are the user's network retargeted to the target's
    10 classes (scratch re-initialised, transfer with its weights and the overlay); the report names the source."""
    from nnc_tools.formats.nnp import load_project
    from nnc_tools.project.export import export_network

    from .conftest import params_of

    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    mine = tmp_path / "mine.nnp"  # "their own" network: resnet20 for 4 classes, saved with its values
    export_network("resnet20", mine, classes=4, input_shape=(3, 32, 32), batch_size=8)
    (tmp_path / "o.yaml").write_text("rules:\n  - up_to: BatchNormalization_3\n    multiplier: 0\n")
    config_file = tmp_path / "own.yaml"
    config_file.write_text("target_recipe: cifar100-aquatic\noverlay: o.yaml\ntarget_epochs: 1\nbatch_size: 8\n"
                           "solver: Momentum\nlr: 0.01\nseeds: 1\nsynthetic_per_class: {target: 5}\n")
    run = tmp_path / "run"
    run_transfer(run, load_config(config_file), synthetic=True, source_project=mine)
    assert not (run / "source").exists() and not (run / "data" / "source").exists()
    scratch, transfer = (load_project(run / f"{k}-s0" / "project.nnp") for k in ("scratch", "transfer"))
    source = params_of(mine)
    for project, kind in ((scratch, "scratch"), (transfer, "transfer")):
        runtime = next(n for n in project.proto.network if n.name == "MainRuntime")
        assert [list(v.shape.dim) for v in runtime.variable if v.name == "Affine/affine/W"] == [[64, 10]], kind
    t, s = transfer.parameters, scratch.parameters
    assert t["Convolution/conv/W"].data.tobytes() == source["Convolution/conv/W"].data.tobytes()
    assert s["Convolution/conv/W"].data.tobytes() != source["Convolution/conv/W"].data.tobytes()
    md = (run / "report.md").read_text()
    assert f"your own project `{mine}`" in md and "| from scratch | 1 |" in md
    assert "**Frozen:** transfer (frozen layers): 12 parameters of 6 layers (Convolution, BatchNormalization" in md
    assert "(`o.yaml`)" in md and not (run / "derived-transfer.yaml").exists()  # the user's own overlay, as given
    # the source file changed: both arms run again (it is in their settings)
    before = json.loads((run / "scratch-s0" / "stage.json").read_text())["settings"]["source"]
    export_network("resnet20", mine, classes=4, input_shape=(3, 32, 32), batch_size=8, seed=1)
    run_transfer(run, load_config(config_file), synthetic=True, source_project=mine)
    assert json.loads((run / "scratch-s0" / "stage.json").read_text())["settings"]["source"] != before


@pytest.mark.slow
def test_transfer_experiment_on_the_users_own_csvs(tmp_path, monkeypatch, messages):
    """source_data / target_data: NNC dataset CSVs in place of the CIFAR recipes (a folder with the three CSVs, or a
    mapping); the class counts come from the CSVs, no archive is needed, the report says whose data it is."""
    from .conftest import write_image_csv

    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    source, target = tmp_path / "mine_source", tmp_path / "mine_target"
    for split, n in (("training", 16), ("validation", 8), ("test", 8)):
        write_image_csv(source, n, classes=4, channels=3, size=32, seed=len(split), name=split)
        write_image_csv(target, n, classes=3, channels=3, size=32, seed=len(split) + 7, name=split)
    (tmp_path / "o.yaml").write_text("rules:\n  - up_to: BatchNormalization_3\n    multiplier: 0\n")
    config_file = tmp_path / "own.yaml"
    config_file.write_text(
        "network: resnet20\noverlay: o.yaml\nsource_epochs: 1\ntarget_epochs: 1\nbatch_size: 4\nseeds: 1\n"
        "source_data: mine_source\ntarget_data: {training: mine_target/training.csv, validation: mine_target/validation.csv,"
        " test: mine_target/test.csv}\n")
    run = tmp_path / "run"
    run_transfer(run, load_config(config_file))  # neither --synthetic nor archives
    progress = said(messages)
    assert f"on your CSVs in {target}" in progress and "cifar100-aquatic" not in progress
    record = json.loads((run / "data" / "target" / "stage.json").read_text())
    assert record["classes"] == ["c0", "c1", "c2"] and record["counts"] == {"training": 16, "validation": 8, "test": 8}
    source_record = json.loads((run / "source" / "stage.json").read_text())
    assert source_record["summary"]["epochs"] == 1
    md = (run / "report.md").read_text()
    assert "**Data: your own NNC dataset CSVs**" in md and "**Target:** your CSVs (3 classes" in md
    assert "**Test set:** 8 images" in md
    # a changed CSV runs the stages that read it again
    before = json.loads((run / "scratch-s0" / "stage.json").read_text())["settings"]
    write_image_csv(target, 20, classes=3, channels=3, size=32, seed=99, name="training")
    run_transfer(run, load_config(config_file))
    assert json.loads((run / "scratch-s0" / "stage.json").read_text())["settings"] != before


@pytest.mark.parametrize("text, message", [
    ("target_data: 3\n", "target_data: expected a folder"),
    ("target_data: {training: a.csv}\n", "target_data: expected a folder"),
    ("target_data: nowhere\n", "no training CSV here (named by target_data)"),
])
def test_user_data_mistakes_are_one_line(cli, tmp_path, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    result = cli("experiment", "transfer", "-c", config, "-o", tmp_path / "run", "--synthetic")
    assert_refused(result, message)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_fine_tune_arm_trains_in_phases_and_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "o.yaml").write_text("rules:\n  - up_to: BatchNormalization_3\n    multiplier: 0\n")
    (tmp_path / "ft.yaml").write_text(
        "phases:\n  - epochs: 1\n    rules: [{up_to: BatchNormalization_3, multiplier: 0}]\n"
        "  - epochs: 1\n    lr_scale: 0.1\n    rules: [{match: '*', params: [W, b, beta, gamma], multiplier: 1}]\n")
    config_file = tmp_path / "ft-config.yaml"
    config_file.write_text(
        "network: resnet20\nsource_recipe: cifar10\ntarget_recipe: cifar100-aquatic\noverlay: o.yaml\nsource_epochs: 1\n"
        "target_epochs: 2\nbatch_size: 8\nsolver: Momentum\nlr: 0.01\nseeds: 1\nsynthetic_per_class: {source: 8, target: 5}\n"
        "arms: [scratch, transfer, fine-tune]\nfine_tune: ft.yaml\nmonitor_interval: 2\n")
    run = tmp_path / "run"
    run_transfer(run, load_config(config_file), synthetic=True)
    log = (run / "fine-tune-s0" / "result" / "training_log.csv").read_text().splitlines()
    assert [line.split(",")[-1] for line in log[1:]] == ["1", "2"]
    # monitor_interval: 2 — the training-set monitor (a forward pass over every training image) runs at epoch 2 only,
    # where the default rule (about ten points) would run it every epoch; the validation monitor runs every epoch
    for arm in ("scratch-s0", "fine-tune-s0"):
        rows = list(csv.DictReader((run / arm / "result" / "training_log.csv").open()))
        assert [bool(r["train_error"]) for r in rows] == [False, True] and all(r["valid_error"] for r in rows)
    md = (run / "report.md").read_text()
    assert "| fine-tune (phases) | 1 |" in md and md.count("| fine-tune (phases) |") == 3  # arm, seed, difference rows
    # what each phase froze, as the transfer arm's overlay: the first phase as o.yaml, the second nothing
    frozen = md.split("**Frozen:** ", 1)[1].split("\n", 1)[0]
    assert "fine-tune (phases): phase 1: 12 parameters of 6 layers (Convolution, BatchNormalization" in frozen
    assert "; phase 2: no parameter (`ft.yaml`)" in frozen and "transfer (frozen layers): 12 parameters of 6 layers" in frozen
    # a fine-tune arm whose phases do not add up to the target epochs is refused before anything runs
    (tmp_path / "ft.yaml").write_text("phases:\n  - epochs: 5\n    freeze: [Affine]\n")
    with pytest.raises(NncToolsError, match="its phases take 5 epochs; the target runs take 2"):
        run_transfer(tmp_path / "other", load_config(config_file), synthetic=True)
    assert not (tmp_path / "other").exists()


def test_arms_are_checked(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("arms: [scratch, finetune]\n")
    with pytest.raises(NncToolsError, match="arms: expected a list of distinct arms"):
        load_config(bad)
    bad.write_text("arms: [scratch, fine-tune]\n")
    with pytest.raises(NncToolsError, match="fine-tune needs 'fine_tune: PHASES.yaml'"):
        run_transfer(tmp_path / "run", load_config(bad), synthetic=True)


@pytest.mark.slow
def test_a_zoo_overlay_is_not_applied_to_the_users_own_network(tmp_path, monkeypatch):
    """--source-project with a config naming the zoo's mini_vggnet_mark2 overlay (up_to Convolution_6): it would freeze
    six unrelated convolutions of the user's ResNet. The run states its own rule instead (every parameterised layer but
    the last frozen), keeps it as derived-transfer.yaml, and the report says which layers, how many, and from where."""
    from nnc_tools.formats.naming import is_statistic
    from nnc_tools.formats.nnp import load_project, multipliers
    from nnc_tools.project.export import export_network

    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    mine = tmp_path / "mine.nnp"
    export_network("resnet20", mine, classes=4, input_shape=(3, 32, 32), batch_size=8)
    config_file = tmp_path / "zoo.yaml"
    config_file.write_text("overlay: networks/mini_vggnet_mark2.freeze-conv1-6.yaml\narms: [scratch, transfer]\n"
                           "target_epochs: 1\nbatch_size: 8\nseeds: 1\nsynthetic_per_class: {target: 5}\n")
    run = tmp_path / "run"
    run_transfer(run, load_config(config_file), synthetic=True, source_project=mine)
    assert "all_but_last: 1" in (run / "derived-transfer.yaml").read_text()
    m = multipliers(load_project(run / "transfer-s0" / "project.nnp").proto.optimizer[0])
    trained = sorted(n for n, v in m.items() if v != 0 and not is_statistic(n))
    assert trained == ["Affine/affine/W", "Affine/affine/b"]  # the head alone; Convolution_7 … are frozen too
    frozen = [n for n, v in m.items() if v == 0 and not is_statistic(n)]
    md = (run / "report.md").read_text()
    assert f"**Frozen:** transfer (frozen layers): {len(frozen)} parameters of" in md
    assert "(`derived-transfer.yaml`, derived for your network)" in md


def test_an_overlay_that_misses_the_network_is_refused_before_any_stage(cli, tmp_path, monkeypatch):
    """The whole configuration is checked first: a transfer overlay naming no layer of the network (or a fine-tune
    phase that does) is one line before the datasets are built or the scratch arm trains, and no run folder is left."""
    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "o.yaml").write_text("freeze: [Convolution_99]\n")
    config = tmp_path / "c.yaml"
    config.write_text("network: resnet20\noverlay: o.yaml\narms: [scratch, transfer]\nsource_epochs: 1\ntarget_epochs: 1\n"
                      "batch_size: 8\nseeds: 1\nsynthetic_per_class: {source: 4, target: 4}\n")
    result = cli("experiment", "transfer", "-c", config, "-o", tmp_path / "run", "--synthetic")
    assert_refused(result, "o.yaml", "match 'Convolution_99' matches nothing in resnet20")
    assert not (tmp_path / "run").exists()
    (tmp_path / "o.yaml").write_text("freeze: [Convolution]\n")
    (tmp_path / "ft.yaml").write_text("phases:\n  - epochs: 1\n    freeze: [Nowhere]\n")
    config.write_text(config.read_text().replace("arms: [scratch, transfer]", "arms: [scratch, fine-tune]\nfine_tune: ft.yaml"))
    assert_refused(cli("experiment", "transfer", "-c", config, "-o", tmp_path / "run", "--synthetic"), "ft.yaml",
                   "match 'Nowhere' matches nothing")
    assert not (tmp_path / "run").exists()


def test_the_learning_curves_have_a_row_per_arm_and_mark_phases(tmp_path):
    """Nine runs stay readable: one row of panels per arm (the image grows with the arms), and a phase's start is
    found where the training log's phase changes."""
    from PIL import Image

    from nnc_tools.training.plots import phase_starts, plot_learning_curves
    from nnc_tools.training.records import EpochRecord

    history = [EpochRecord(e, 1.0, None, 1.0, 0.5, 1.0, 1.0, 1 if e < 3 else 2) for e in range(1, 5)]
    assert phase_starts(history) == [3] and phase_starts(history[:2]) == []
    runs = {f"{arm} s{s}": history for arm in ("scratch", "transfer", "fine-tune") for s in range(3)}
    groups = {name: name.split()[0] for name in runs}
    plot_learning_curves(runs, tmp_path / "three.png", groups=groups)
    plot_learning_curves({"scratch s0": history}, tmp_path / "one.png", groups={"scratch s0": "scratch"})
    assert Image.open(tmp_path / "three.png").height > 2.5 * Image.open(tmp_path / "one.png").height


def test_an_untrained_source_project_is_refused_before_any_stage_runs(cli, tmp_path):
    """A source project without values (here an exported .nntxt, no parameter file; NNC's .sdcproj without its results
    is the same case) once trained the scratch arm and then failed at the transfer arm, leaving a half run folder."""
    from .conftest import write_image_csv

    mine = tmp_path / "mine.nntxt"
    assert cli("export", "mini_vggnet", "-o", mine).code == 0 and not list(tmp_path.glob("mine.h5"))
    csvs = {role: write_image_csv(tmp_path, 6, size=32, channels=3, name=role) for role in ("training", "validation")}
    config = tmp_path / "exp.yaml"
    config.write_text(f"target_data: {{training: {csvs['training']}, validation: {csvs['validation']}, "
                      f"test: {csvs['validation']}}}\ntarget_epochs: 2\nbatch_size: 2\nseeds: 1\narms: [scratch, transfer]\n")
    result = cli("experiment", "transfer", "-c", config, "--source-project", mine, "-o", tmp_path / "run")
    assert result.code == 2 and not (tmp_path / "run").exists(), result.err
    error = result.err.strip().splitlines()[-1]
    assert error.startswith(f"nnc-tl: error: {mine}: holds no values for 24 of its parameters") and \
        "need a trained source" in error
