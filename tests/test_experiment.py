"""`nnc-tl experiment transfer` end to end at the smallest settings: stages, resume, the report and where its numbers come from."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from nnc_tools.experiment.config import load_config
from nnc_tools.experiment.report import write_report
from nnc_tools.experiment.transfer import run_transfer


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
    assert page.count("data:image/png;base64,") == 3  # learning curves + two confusion matrices, embedded
    assert not re.search(r'src="(?!data:)', page)
    md = (run / "report.md").read_text()
    assert "| from scratch | 2 |" in md and " ± " in md and "Published reference" in md

    # a re-run finds every stage finished and only rewrites the report
    before = stage_times(run)
    run_transfer(run, config, synthetic=True)
    assert stage_times(run) == before
    assert "[experiment]" not in said(messages)

    # an interrupted stage (no stage.json) is run again, resuming its training from the checkpoint
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
    assert "98765 s ± 0 s" in md and "43.2 % ± 0.0 %" in md

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
    assert config.path(config.overlay).is_file()  # the checkout's networks/ overlay


def test_missing_archives_fail_before_anything_is_written(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    result = cli("experiment", "transfer", "-o", tmp_path / "run")
    assert result.code == 2 and "--cifar10" in result.err and "cifar-10-python.tar.gz" in result.err
    assert not (tmp_path / "run").exists()
