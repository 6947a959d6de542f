"""`nnc-tl info` / `convert` / `--version`, and every bad input: exit 2, one line naming the file, no output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nnc_tools import __version__
from nnc_tools.formats.nnp import load_project

from .conftest import needs_samples, nnabla_saved, nnc_samples, parameters_equal, tiny_project


def test_version(cli):
    result = cli("--version")
    assert result.code == 0 and __version__ in result.out


def test_info_text_and_json(cli, tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    text = cli("info", src)
    assert text.code == 0
    assert "network Main" in text.out and "Convolution/conv/W" in text.out and "optimizer Optimizer" in text.out
    data = json.loads(cli("info", src, "--json").out)
    assert [n["name"] for n in data["networks"]] == ["Main", "MainValidation", "MainRuntime"]
    params = {p["name"]: p for p in data["parameters"]}
    assert params["Convolution/conv/W"]["shape"] == [4, 1, 3, 3]
    assert params["Convolution/conv/W"]["size"] == 36
    assert data["optimizers"][0]["learning_rate"] == pytest.approx(0.01)
    assert data["optimizers"][0]["multipliers"]["Affine/affine/W"] == 1.0
    assert data["datasets"][0]["name"] == "Training"


def test_convert_and_info_on_converted(cli, tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    result = cli("convert", src, tmp_path / "b.nntxt")
    assert result.code == 0, result.err
    assert (tmp_path / "b.nntxt").is_file() and (tmp_path / "b.h5").is_file()
    assert cli("convert", tmp_path / "b.nntxt", tmp_path / "c.nnp").code == 0
    assert parameters_equal(load_project(src).parameters, load_project(tmp_path / "c.nnp").parameters)


@needs_samples
@pytest.mark.parametrize("sample", nnc_samples("*.prototxt"), ids=lambda p: p.name)
def test_info_and_convert_on_nnc_samples(cli, tmp_path, sample):
    info = cli("info", sample, "--json")
    assert info.code == 0, info.err
    data = json.loads(info.out)
    assert data["networks"][0]["name"] == first_network_name(sample)
    assert data["optimizers"] and data["parameters"]
    for dst in ("x.nnp", "x.nntxt", "x.protobuf"):
        result = cli("convert", sample, tmp_path / dst)
        assert result.code == 0, result.err
        assert load_project(tmp_path / dst).proto == load_project(sample).proto


def first_network_name(prototxt: Path) -> str:
    """The file's first network, read with NNabla's own schema and protobuf's parser (not ours)."""
    from google.protobuf import text_format
    from nnabla.utils import nnabla_pb2

    proto = nnabla_pb2.NNablaProtoBuf()
    text_format.Merge(prototxt.read_text(encoding="utf-8-sig"), proto)
    return proto.network[0].name


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).with_name("nnc-tl")
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (run through the Makefile's venv)")
    src = nnabla_saved(tmp_path / "a.nnp")
    done = subprocess.run([str(exe), "info", str(src)], capture_output=True, text=True)
    assert done.returncode == 0 and "network Main" in done.stdout
    bad = subprocess.run([str(exe), "info", str(tmp_path / "x.bin")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------------------------------------------- bad input


def make_zip(path: Path, members: dict, compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def good_text() -> bytes:
    return b'network { name: "Main" batch_size: 1 }\n'


def bad_inputs(tmp_path: Path):
    tmp_path = Path(tmp_path)
    good = nnabla_saved(tmp_path / "good.nnp")
    data = good.read_bytes()
    (tmp_path / "truncated.nnp").write_bytes(data[: len(data) // 2])
    make_zip(tmp_path / "traversal.nnp", {"network.nntxt": good_text(), "../evil.txt": b"x"})
    make_zip(tmp_path / "absolute.nnp", {"network.nntxt": good_text(), "/etc/evil.txt": b"x"})
    make_zip(tmp_path / "bomb.nnp", {"network.nntxt": good_text(), "parameter.h5": bytes(64 << 20)}, zipfile.ZIP_DEFLATED)
    make_zip(tmp_path / "text_bomb.nnp", {"network.nntxt": b" " * (64 << 20)}, zipfile.ZIP_DEFLATED)
    make_zip(tmp_path / "nonetwork.nnp", {"nnp_version.txt": b"0.1\n"})
    make_zip(tmp_path / "badtext.nnp", {"network.nntxt": b"network { name: \"Main\" bogus_field: 3 }"})
    (tmp_path / "malformed.nntxt").write_text('network { name: "Main"\n  function { name: "x" \n')
    (tmp_path / "unknownfield.prototxt").write_text("netwerk { }\n")
    (tmp_path / "garbage.protobuf").write_bytes(b"\xff\xff\xff\xff\x0f")
    (tmp_path / "model.onnx").write_bytes(b"whatever")
    (tmp_path / "notzip.nnp").write_text("hello")
    (tmp_path / "badparams.nntxt").write_text(good_text().decode())
    (tmp_path / "badparams.h5").write_bytes(b"not hdf5 at all")


BAD = [
    "truncated.nnp", "traversal.nnp", "absolute.nnp", "bomb.nnp", "text_bomb.nnp", "nonetwork.nnp", "badtext.nnp",
    "malformed.nntxt", "unknownfield.prototxt", "garbage.protobuf", "model.onnx", "notzip.nnp", "badparams.nntxt",
    "missing.nnp",
]


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    bad_inputs(folder)
    return folder


@pytest.mark.parametrize("name", BAD)
@pytest.mark.parametrize("command", ["info", "convert"])
def test_bad_input_is_one_line_exit_2_no_output(cli, bad_dir, tmp_path, name, command):
    src = bad_dir / name
    out = tmp_path / "out"
    out.mkdir()
    before = {p: p.read_bytes() for p in bad_dir.iterdir()}
    args = ["info", src] if command == "info" else ["convert", src, out / "x.nnp"]
    result = cli(*args)
    assert result.code == 2, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err
    named = src.with_suffix(".h5") if name == "badparams.nntxt" else src  # the broken file is the sidecar
    assert str(named) in lines[0]
    assert list(out.iterdir()) == []
    assert {p: p.read_bytes() for p in bad_dir.iterdir()} == before
    assert not (bad_dir.parent / "evil.txt").exists()


def test_unknown_output_extension(cli, tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    result = cli("convert", src, tmp_path / "b.onnx")
    assert result.code == 2 and "b.onnx" in result.err
    assert not (tmp_path / "b.onnx").exists()


def test_convert_never_overwrites_its_input(cli, tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    before = src.read_bytes()
    result = cli("convert", src, src)
    assert result.code == 2 and "input" in result.err
    assert src.read_bytes() == before
    save = cli("convert", src, tmp_path / "b.nntxt")
    assert save.code == 0
    sidecar = (tmp_path / "b.h5").read_bytes()
    again = cli("convert", tmp_path / "b.nntxt", tmp_path / "b.nntxt")
    assert again.code == 2
    assert (tmp_path / "b.h5").read_bytes() == sidecar
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_no_stray_temp_files_after_errors(cli, bad_dir, tmp_path):
    for name in BAD:
        cli("convert", bad_dir / name, tmp_path / "x.nntxt")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args", [["info", "{p}", "--json"], ["info", "{p}"], ["apply-freeze", "{p}", "-c", "{o}", "--dry-run"]])
def test_a_reader_that_goes_away_is_no_error(tmp_path, args):
    """`nnc-tl info … | head -1`: the reader closes the pipe before nnc-tl writes; no traceback, exit 0, nothing changed."""
    project = tiny_project(tmp_path)
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution]\n")
    before = project.read_bytes()
    command = [sys.executable, "-m", "nnc_tools.cli"] + [a.format(p=project, o=overlay) for a in args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # before a byte is read: every write of nnc-tl meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    assert project.read_bytes() == before


def test_convert_writes_both_files_or_neither(cli, tmp_path):
    """A text project and its parameter file: when the second cannot be written (a folder stands there), the first is
    not left behind either."""
    project = tiny_project(tmp_path)
    (tmp_path / "out.h5").mkdir()
    result = cli("convert", project, tmp_path / "out.nntxt")
    assert result.code == 2 and "out.h5: cannot write: is a folder, not a file" in result.err, result.err
    assert not (tmp_path / "out.nntxt").exists() and not list(tmp_path.glob(".out.*.tmp"))


def test_frozen_counts_agree_between_apply_freeze_info_and_train(cli, tmp_path):
    """One way of counting frozen parameters everywhere: trainable parameters at multiplier 0, Batch Normalization's
    running statistics (0 by default, trained by no solver) not among them."""
    project = tiny_project(tmp_path)
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution, BatchNormalization]\n")
    frozen = cli("apply-freeze", project, "-c", overlay)
    assert frozen.code == 0 and "4 frozen in all" in frozen.out, frozen.out
    assert "4 of 6 parameters frozen" in cli("info", project).out
    result = cli("train", project, "-o", tmp_path / "r", "--epochs", "1", "--workers", "1")
    assert result.code == 0 and "4 parameters frozen" in result.out, result.out


def _sleep_long():
    import time as _time

    _time.sleep(60)


def test_a_worker_that_inherited_the_sigterm_handler_still_dies_by_it():
    """nnc-tl turns SIGTERM into Ctrl-C in its own process; a pool worker forked from it (multiprocessing ends workers
    with SIGTERM) must still die by the signal, or the pool can hang on it."""
    import multiprocessing
    import signal
    import time

    from nnc_tools import cli as cli_module

    previous = signal.signal(signal.SIGTERM, cli_module._interrupt)
    try:
        worker = multiprocessing.get_context("fork").Process(target=_sleep_long)
        worker.start()
        time.sleep(0.5)  # the worker runs its target, as a pool's do
        worker.terminate()  # SIGTERM, as Pool.terminate sends it
        worker.join(timeout=30)
        assert worker.exitcode == -signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
