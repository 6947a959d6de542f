"""`nnc-tl apply-freeze` from the command line: output, every overlay error, nnabla_cli training, bounded memory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nnc_tools.formats.nnp import load_project, multipliers

from .conftest import NNC_SAMPLES, needs_samples, nnabla_saved, single, tiny_contents, write_image_csv


@pytest.fixture
def nnp(tmp_path) -> Path:
    return nnabla_saved(tmp_path / "p.nnp")


def test_prints_table_and_summary(cli, nnp, tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("rules:\n  - up_to: Convolution\n    multiplier: 0\n  - match: Affine\n    multiplier: 2.5\n")
    out = tmp_path / "out.nnp"
    result = cli("apply-freeze", nnp, "-c", overlay, "-o", out)
    assert result.code == 0, result.err
    assert "Convolution/conv/W  Optimizer  1 -> 0" in result.out
    assert "Affine/affine/W" in result.out and "1 -> 2.5" in result.out
    assert "4 multipliers changed" in result.out and f"wrote {out}" in result.out
    assert "full rate" in result.err and len(result.err.strip().splitlines()) == 1
    again = cli("apply-freeze", out, "-c", overlay)
    assert again.code == 0 and "nothing to change" in again.out and "wrote" not in again.out


def test_dry_run_writes_nothing(cli, nnp, tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution]\n")
    before = nnp.read_bytes()
    result = cli("apply-freeze", nnp, "-c", overlay, "--dry-run")
    assert result.code == 0 and "dry run" in result.out and "1 -> 0" in result.out
    assert nnp.read_bytes() == before


def test_overlay_lookup_order(cli, nnp, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = cli("apply-freeze", nnp)
    assert missing.code == 2 and "p.freeze.yaml" in missing.err and "freeze.yaml" in missing.err
    (tmp_path / "freeze.yaml").write_text("freeze: [Affine]\n")
    assert cli("apply-freeze", nnp).code == 0
    assert multipliers(load_project(nnp).proto.optimizer[0])["Affine/affine/W"] == 0
    (tmp_path / "p.freeze.yaml").write_text("lr_multiplier: {Affine: 1}\n")
    assert cli("apply-freeze", nnp).code == 0  # the sibling wins over ./freeze.yaml
    assert multipliers(load_project(nnp).proto.optimizer[0])["Affine/affine/W"] == 1


BAD_OVERLAYS = {
    "no_match": ("freeze: [Convolutoin]\n", "closest: Convolution"),
    "no_up_to": ("rules:\n  - up_to: Convolution_9\n    multiplier: 0\n", "Convolution"),
    "params_filter_nothing": ("rules:\n  - match: Affine\n    params: [gamma]\n    multiplier: 0\n", "matches nothing"),
    "unknown_top_key": ("freeze: [Affine]\nfreez: [Affine]\n", "unknown key 'freez'"),
    "unknown_rule_key": ("rules:\n  - match: Affine\n    multipler: 0\n", "unknown key 'multipler'"),
    "missing_multiplier": ("rules:\n  - match: Affine\n", "'multiplier' is missing"),
    "both_match_and_up_to": ("rules:\n  - match: Affine\n    up_to: Affine\n    multiplier: 0\n", "exactly one"),
    "negative": ("lr_multiplier: {Affine: -1}\n", "finite number >= 0"),
    "infinite": ("lr_multiplier: {Affine: .inf}\n", "finite number >= 0"),
    "nan": ("lr_multiplier: {Affine: .nan}\n", "finite number >= 0"),
    "string": ("lr_multiplier: {Affine: fast}\n", "finite number >= 0"),
    "bool": ("lr_multiplier: {Affine: true}\n", "finite number >= 0"),
    "no_optimizer": ("optimizers: [Optimiser]\nfreeze: [Affine]\n", "'Optimiser' does not exist"),
    "not_yaml": ("rules: [\n", "not valid YAML"),
    "python_tag": ("freeze: !!python/object/apply:os.system ['touch pwned']\n", "not valid YAML"),
    "not_mapping": ("- Affine\n", "must be a mapping"),
    "empty": ("", "no rules"),
}


@pytest.mark.parametrize("case", sorted(BAD_OVERLAYS))
@pytest.mark.parametrize("kind", ["nnp", "sdcproj"])
def test_bad_overlay_is_exit_2_one_line_nothing_written(cli, tmp_path, case, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, expected = BAD_OVERLAYS[case]
    if kind == "nnp":
        project = nnabla_saved(tmp_path / "p.nnp")
    else:
        project = tmp_path / "p.sdcproj"
        project.write_text(single())
        text = text.replace("Convolution_9", "Convolution_7").replace("Optimiser", "Optimiserr")
    overlay = tmp_path / "o.yaml"
    overlay.write_text(text)
    before = project.read_bytes()
    out = tmp_path / f"out{project.suffix}"
    result = cli("apply-freeze", project, "-c", overlay, "-o", out)
    assert result.code == 2, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err
    assert str(overlay) in lines[0] and expected.split("'")[0] in lines[0]
    assert project.read_bytes() == before and not out.exists()
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["o.yaml", project.name])


def test_nearest_names_in_errors(cli, nnp, tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("rules:\n  - up_to: BatchNormalisation\n    multiplier: 0\n")
    result = cli("apply-freeze", nnp, "-c", overlay)
    assert result.code == 2 and "closest: BatchNormalization" in result.err


def test_output_extension_must_match(cli, nnp, tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Affine]\n")
    result = cli("apply-freeze", nnp, "-c", overlay, "-o", tmp_path / "x.nntxt")
    assert result.code == 2 and "extension" in result.err and not (tmp_path / "x.nntxt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("frozen_bn", ["inference", "batch"])
def test_nnabla_cli_train_leaves_frozen_parameters_bit_identical(cli, tmp_path, frozen_bn):
    exe = Path(sys.executable).with_name("nnabla_cli")
    if not exe.exists():
        pytest.skip(f"{exe} is not installed")
    csv = write_image_csv(tmp_path, 24, name="training")
    from nnabla.utils.save import save as nnabla_save

    contents = tiny_contents()
    contents["datasets"][0]["uri"] = str(csv)
    nnabla_save(str(tmp_path / "p.nnp"), contents)
    overlay = tmp_path / "o.yaml"
    overlay.write_text(f"frozen_bn: {frozen_bn}\nrules:\n  - up_to: BatchNormalization\n    multiplier: 0\n")
    applied = cli("apply-freeze", tmp_path / "p.nnp", "-c", overlay, "-o", tmp_path / "f.nnp")
    assert applied.code == 0
    assert ("BatchNormalization batch_stat" in applied.out) == (frozen_bn == "inference")
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([str(exe), "train", "-c", str(tmp_path / "f.nnp"), "-p", str(tmp_path / "f.nnp"), "-o", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    before = load_project(tmp_path / "f.nnp").parameters
    after = load_project(out / "results.nnp").parameters
    for name in ("Convolution/conv/W", "Convolution/conv/b", "BatchNormalization/bn/beta", "BatchNormalization/bn/gamma"):
        assert before[name].data.tobytes() == after[name].data.tobytes(), name
    for name in ("Affine/affine/W", "Affine/affine/b"):
        assert before[name].data.tobytes() != after[name].data.tobytes(), name
    # With frozen_bn: batch, nnabla_cli's training network runs BN on batch statistics, so the running mean/var move
    # although their multiplier is 0 (they are not solver-updated); with inference (the default) the written training
    # network runs it on its running statistics and they stay as they were, as in nnc-tl's trainer.
    for name in ("BatchNormalization/bn/mean", "BatchNormalization/bn/var"):
        kept = before[name].data.tobytes() == after[name].data.tobytes()
        assert kept == (frozen_bn == "inference"), name


PEAK = """
import sys
from nnc_tools.project.freeze import apply_freeze
apply_freeze(sys.argv[1], sys.argv[2], sys.argv[3])
print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] // 1024)
"""


@pytest.mark.slow
def test_big_nnp_is_streamed_not_loaded(tmp_path):
    """A 320 MB .nnp is frozen with a peak RSS far below its size (the parameters are copied, never held)."""
    from benchmarks.project_io import make_big_nnp

    big = tmp_path / "big.nnp"
    make_big_nnp(big, 320)
    assert big.stat().st_size > 300 << 20
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: ['Affine_1*']\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", PEAK, str(big), str(overlay), str(tmp_path / "out.nnp")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mb = int(done.stdout.split()[-1])
    assert peak_mb < 200, f"peak RSS {peak_mb} MB for a {big.stat().st_size >> 20} MB .nnp"
    with zipfile.ZipFile(big) as a, zipfile.ZipFile(tmp_path / "out.nnp") as b:
        assert a.getinfo("parameter.h5").CRC == b.getinfo("parameter.h5").CRC
    assert multipliers(load_project(tmp_path / "out.nnp").proto.optimizer[0])["Affine_10/affine/W"] == 0


@needs_samples
def test_a_name_that_stands_for_several_layers_is_said(cli, tmp_path):
    """NIN has Convolution_3 in three Units and at its top level: a bare name sets all four, and apply-freeze (its dry
    run too) says so with the qualified names that pick one; a qualified name is not ambiguous."""
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution_3]\n")
    result = cli("apply-freeze", NNC_SAMPLES / "nin.sdcproj", "-c", overlay, "--dry-run")
    assert result.code == 0, result.err
    assert "'Convolution_3' names 4 layers (MPC/Convolution_3, MPC_2/Convolution_3, MPC_3/Convolution_3" in result.err
    assert "pick one by its qualified name ('MPC/Convolution_3')" in result.err
    overlay.write_text("freeze: [MPC_2/Convolution_3]\n")
    result = cli("apply-freeze", NNC_SAMPLES / "nin.sdcproj", "-c", overlay, "--dry-run")
    assert result.code == 0 and "names 4 layers" not in result.err and "2 frozen in all" in result.out, (result.out, result.err)
