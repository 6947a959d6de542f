"""Mistakes a user can make, through the real CLI: one line on stderr naming what is wrong, exit 2, no traceback,
nothing written, inputs unchanged (SPEC's contract; issue 19's examples)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from .conftest import assert_refused, nnabla_saved

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "freeze: *i\n"


def snapshot(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("text, message", [
    ("freeze: [Affine]\nfreeze: [Convolution]\n", "key 'freeze' given twice"),
    ("rules:\n  - match: Affine\n    multiplier: 0\n    multiplier: 1\n", "key 'multiplier' given twice"),
    (BILLION_LAUGHS, "anchors (&a) are not accepted"),
    ("base: &b {match: Affine, multiplier: 0}\nrules: [*b]\n", "not accepted"),
    ("freeze: [Affine\n", "not valid YAML"),
    ("freeze: [A]\n\x07", "not valid YAML"),
])
def test_overlay_yaml_traps(cli, tmp_path, text, message):
    project = nnabla_saved(tmp_path / "p.nnp")
    overlay = tmp_path / "o.yaml"
    overlay.write_text(text)
    before = snapshot(tmp_path)
    result = cli("apply-freeze", project, "-c", overlay)
    assert_refused(result, message, overlay)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("text, message", [
    ("seeds: two\n", "seeds: expected a whole number"),
    ("batch_size: 100000000\n", "batch_size: expected a whole number from 1 to 65,536"),
    ("target_epochs: 0\n", "target_epochs"),
    ("source_epochs: true\n", "source_epochs"),
    ("lr: .nan\n", "lr: expected a finite number > 0"),
    ("lr: -1\n", "lr: expected a finite number > 0"),
    ("network: [a, b]\n", "network: expected a name"),
    ("synthetic_per_class: {source: 0}\n", "synthetic_per_class"),
    ("seeds: 2\nseeds: 3\n", "key 'seeds' given twice"),
])
def test_experiment_config_values(cli, tmp_path, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    result = cli("experiment", "transfer", "-c", config, "--synthetic", "-o", tmp_path / "run")
    assert_refused(result, message, config)
    assert not (tmp_path / "run").exists()


def test_recipe_duplicate_keys(cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: cifar10\nclasses: [cat]\nclasses: [dog]\n")
    result = cli("dataset", recipe, "--synthetic", "-o", tmp_path / "o")
    assert_refused(result, "key 'classes' given twice", recipe)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "P", "-o", "R", "--batch-size", "0"], "--batch-size: expected a batch size from 1"),
    (["train", "P", "-o", "R", "--batch-size", "-4"], "--batch-size"),
    (["train", "P", "-o", "R", "--batch-size", "999999999"], "to 65,536"),
    (["train", "P", "-o", "R", "--epochs", "0"], "--epochs: expected a whole number from 1"),
    (["train", "P", "-o", "R", "--workers", "0"], "--workers"),
    (["train", "P", "-o", "R", "--seed", "-1"], "--seed"),
    (["evaluate", "P", "--dataset", "D", "--batch-size", "0"], "--batch-size"),
    (["export", "mini_vggnet", "-o", "X.nnp", "--lr", "nan"], "--lr: expected a finite learning rate > 0"),
    (["export", "mini_vggnet", "-o", "X.nnp", "--lr", "inf"], "--lr"),
    (["export", "mini_vggnet", "-o", "X.nnp", "--lr", "0"], "--lr"),
    (["export", "mini_vggnet", "-o", "X.nnp", "--classes", "1"], "--classes"),
    (["export", "mini_vggnet", "-o", "X.nnp", "--epochs", "ten"], "expected a whole number, got 'ten'"),
    (["dataset", "cifar10", "-o", "O", "--synthetic-per-class", "0"], "--synthetic-per-class"),
    (["experiment", "transfer", "-o", "O", "--seeds", "two"], "--seeds"),
])
def test_numbers_on_the_command_line(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert_refused(result, message)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["1.0e+300", "1.0e-320", "1.0e-40"])
def test_multipliers_a_float32_cannot_hold(cli, tmp_path, value):
    project = nnabla_saved(tmp_path / "p.nnp")
    overlay = tmp_path / "o.yaml"
    overlay.write_text(f"lr_multiplier: {{Affine: {value}}}\n")
    before = snapshot(tmp_path)
    assert_refused(cli("apply-freeze", project, "-c", overlay), "cannot be stored", overlay)
    assert snapshot(tmp_path) == before


def test_the_same_fractional_multiplier_twice_changes_nothing(cli, tmp_path):
    project = nnabla_saved(tmp_path / "p.nnp")
    overlay = tmp_path / "o.yaml"
    overlay.write_text("lr_multiplier: {Affine: 0.1}\n")
    assert cli("apply-freeze", project, "-c", overlay).code == 0
    stamp = project.stat().st_mtime_ns, project.read_bytes()
    again = cli("apply-freeze", project, "-c", overlay)
    assert again.code == 0 and "nothing to change" in again.out and "0.1 -> 0.1" not in again.out
    assert (project.stat().st_mtime_ns, project.read_bytes()) == stamp


def test_random_bytes_are_not_a_protobuf_project(cli, tmp_path):
    import random

    rng = random.Random(7)
    for k in range(40):
        path = tmp_path / f"r{k}.protobuf"
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))))
        assert_refused(cli("info", path), path)


def test_an_nnp_with_a_member_twice_is_refused(cli, tmp_path):
    import warnings
    import zipfile

    good = nnabla_saved(tmp_path / "p.nnp")
    twice = tmp_path / "twice.nnp"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(twice, "w") as dst, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is asked to write
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("network.nntxt", b"# a second network text\n")
    assert_refused(cli("info", twice), "appears twice", twice)
    assert_refused(cli("convert", twice, tmp_path / "out.nnp"), "appears twice")
    assert not (tmp_path / "out.nnp").exists()


def test_a_non_numeric_numproperty_reads_as_none(cli, tmp_path):
    from .conftest import single

    project = tmp_path / "p.sdcproj"
    project.write_text(single().replace("NumProperty=2", "NumProperty=twelve", 1))
    result = cli("info", project)
    assert result.code == 0 and "Traceback" not in result.err


def test_shapes_past_int64_are_counted_exactly(cli, tmp_path):
    from nnc_tools.formats.nnp import load_project, save_project

    project = load_project(nnabla_saved(tmp_path / "p.nnp"))
    var = project.proto.network[0].variable.add()
    var.name, var.type = "Huge/affine/W", "Parameter"
    var.shape.dim.extend([2**40, 2**40])
    save_project(project, tmp_path / "huge.nntxt", parameter_format="inline")
    result = cli("info", tmp_path / "huge.nntxt", "--json")
    sizes = {p["name"]: p["size"] for p in __import__("json").loads(result.out)["parameters"]}
    assert sizes["Huge/affine/W"] == 2**80


def output_cases(tmp_path: Path):
    (tmp_path / "afile").write_text("a regular file\n")
    (tmp_path / "adir.nnp").mkdir()
    (tmp_path / "adir.nntxt").mkdir()
    long = "n" * 300
    project = nnabla_saved(tmp_path / "p.nnp")
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Affine]\n")
    for out, why in ((tmp_path / "afile" / "x.nnp", "is a file, not a folder"), (tmp_path / "adir.nnp", "is a folder"),
                     (tmp_path / f"{long}.nnp", "too long")):
        yield ["convert", project, out], why
        yield ["apply-freeze", project, "-c", overlay, "-o", out], why
        yield ["export", "resnet20", "-o", out], why
    yield ["convert", project, tmp_path / "adir.nntxt"], "is a folder"
    yield ["dataset", "cifar10", "--synthetic", "--synthetic-per-class", "2", "-o", tmp_path / "afile" / "d"], "afile"


def test_outputs_that_cannot_be_written(cli, tmp_path):
    for args, why in output_cases(tmp_path):
        before = snapshot(tmp_path)
        result = cli(*args)
        assert_refused(result, why)
        assert snapshot(tmp_path) == before, args
        assert not [p for p in tmp_path.rglob(".*.tmp")], args


# --------------------------------------------------------------------------- values that would reach a file wrong (29.5)


def _wrong_shape_weights(tmp_path):
    """tiny_project as a text project (its parameters beside it) and an .h5 whose Affine weight has another shape."""
    import nnabla as nn

    from nnc_tools.formats.nnp import load_project

    from .conftest import tiny_project

    source = tiny_project(tmp_path)
    nn.clear_parameters()
    for name, p in load_project(source).parameters.items():
        shape = (p.data.shape[0] + 1,) + p.data.shape[1:] if name == "Affine/affine/W" else p.data.shape
        nn.parameter.get_parameter_or_create(name, shape).d = 0.5
    nn.save_parameters(str(tmp_path / "wrong.h5"))
    nn.clear_parameters()
    return source


def test_parameters_of_the_wrong_shape_are_refused(cli, tmp_path):
    source = _wrong_shape_weights(tmp_path)
    before = snapshot(tmp_path)
    for args in (["convert", source, tmp_path / "c.nnp", "--params", tmp_path / "wrong.h5"],
                 ["retarget", source, "-o", tmp_path / "t.nnp", "--train-csv", tmp_path / "training.csv",
                  "--val-csv", tmp_path / "validation.csv", "--weights", tmp_path / "wrong.h5"]):
        assert_refused(cli(*args), "wrong.h5", "Affine/affine/W is", "p.nnp declares", "another network")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("job", ["bad\nname", "a/..", ".."])
def test_a_job_dir_nnc_cannot_read_is_refused(cli, tmp_path, job):
    from .conftest import NNC_SAMPLES

    if not (NNC_SAMPLES / "LeNet.sdcproj").is_file():
        pytest.skip("NNC's LeNet.sdcproj (../shared/nnc-samples) is absent")
    weights = tmp_path / "w.nnp"
    assert cli("convert", NNC_SAMPLES / "LeNet.prototxt", weights).code == 0
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution]\n")
    result = cli("apply-freeze", NNC_SAMPLES / "LeNet.sdcproj", "-c", overlay, "-o", tmp_path / "o.sdcproj",
                 "--weights", weights, "--job-dir", tmp_path / job)
    assert_refused(result, "no folder name NNC can take as a job id")
    assert not (tmp_path / "o.sdcproj").exists()


def test_a_learning_rate_a_float32_cannot_hold_is_refused_before_training(cli, tmp_path):
    from .conftest import tiny_project

    project = tiny_project(tmp_path)
    phases = tmp_path / "p.yaml"
    phases.write_text("phases:\n  - epochs: 1\n    lr_scale: 1.0e+300\n    freeze: [Convolution]\n  - epochs: 1\n"
                      "    freeze: [Affine]\n")
    result = cli("train", project, "-o", tmp_path / "r", "--phases", phases)
    assert_refused(result, "phases[0].lr_scale 1e+300 makes the learning rate", "a float32 cannot hold")
    assert not (tmp_path / "r").exists()


def test_training_that_diverges_stops_with_one_line(cli, tmp_path):
    """A learning rate of 1e30: the loss turns inf/NaN within an epoch; the run says so instead of saving NaN weights."""
    from nnc_tools.formats.nnp import load_project, save_project

    from .conftest import tiny_project

    loaded = load_project(tiny_project(tmp_path))
    loaded.proto.optimizer[0].solver.momentum_param.lr = 1e30
    save_project(loaded, tmp_path / "hot.nnp")
    result = cli("train", tmp_path / "hot.nnp", "-o", tmp_path / "r", "--workers", "1", "-q")
    assert_refused(result, "hot.nnp", "training diverged")
    assert not (tmp_path / "r").exists()


def test_a_network_count_that_is_no_number_is_refused(cli, tmp_path):
    project = tmp_path / "three.sdcproj"
    project.write_text("[Engine]\nSDeepEngineType=NNabla\n[Global]\nNumNetwork=three\nNetwork_0=Main\n")
    assert_refused(cli("info", project), "three.sdcproj", "NumNetwork='three' is not a count of networks")


# --------------------------------------------------------------------------------------- one truth per input (29.6)


def _project_and_csvs(tmp_path):
    from .conftest import tiny_project

    return tiny_project(tmp_path), tmp_path / "training.csv", tmp_path / "validation.csv"


def _retarget(cli, tmp_path, source, train_csv, val_csv, *flags):
    return cli("retarget", source, "-o", tmp_path / "t.nnp", "--train-csv", train_csv, "--val-csv", val_csv, *flags)


def test_retarget_refuses_what_train_would_refuse(cli, tmp_path):
    """--classes against the header, splits naming other classes, a header without rows, a column the network reads
    missing: retarget says so in one line, as train would, and writes nothing."""
    source, train_csv, val_csv = _project_and_csvs(tmp_path)
    rows = train_csv.read_text().splitlines()
    cases = {
        "other_names.csv": ("\n".join(["x:image,y:label;a;b;c"] + rows[1:]), "splits of two different datasets"),
        "header_only.csv": (rows[0], "dataset CSV has no rows"),
        "no_image.csv": ("\n".join(["z:image,y:label;c0;c1;c2"] + rows[1:]), "has no column x, which the network reads"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text + "\n")
        assert_refused(_retarget(cli, tmp_path, source, train_csv, tmp_path / name), name, message)
    assert_refused(_retarget(cli, tmp_path, source, train_csv, val_csv, "--classes", "5"),
                   "training.csv", "its header names 3 classes, --classes says 5")
    assert not (tmp_path / "t.nnp").exists()


def test_retarget_takes_weights_from_an_nnp_as_its_help_says(cli, tmp_path):
    source, train_csv, val_csv = _project_and_csvs(tmp_path)
    result = _retarget(cli, tmp_path, source, train_csv, val_csv, "--weights", source)
    assert result.code == 0, result.err


def test_train_checks_the_headers_before_decoding_a_row(cli, tmp_path, monkeypatch):
    """A CSV naming 5 classes for a 3-class network is refused from its header: no image is decoded first (a million
    rows would take minutes before the first line)."""
    import nnc_tools.training.train as train_module

    source, train_csv, _ = _project_and_csvs(tmp_path)
    rows = train_csv.read_text().splitlines()
    train_csv.write_text("\n".join(["x:image,y:label;a;b;c;d;e"] + rows[1:]) + "\n")

    def no_decoding(*args, **kwargs):
        raise AssertionError("a dataset was decoded before the header was checked")

    monkeypatch.setattr(train_module, "load_dataset", no_decoding)
    assert_refused(cli("train", source, "-o", tmp_path / "r"), "training.csv", "its header names 5 classes", "scores 3")


def test_settings_that_would_be_ignored_are_refused(cli, tmp_path):
    source, _, _ = _project_and_csvs(tmp_path)
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution]\n")
    assert_refused(cli("apply-freeze", source, "-c", overlay, "--job-dir", tmp_path / "job"), "--job-dir goes with --weights")
    config = tmp_path / "c.yaml"
    for folder in ("s", "t"):
        for split in ("training", "validation", "test"):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / f"{split}.csv").write_text((tmp_path / "training.csv").read_text())
    config.write_text("source_data: s\ntarget_data: t\n")
    assert_refused(cli("experiment", "transfer", "-c", config, "-o", tmp_path / "run", "--synthetic"),
                   "--synthetic: every dataset this run uses is your own CSVs")
    assert_refused(cli("experiment", "transfer", "-c", config, "-o", tmp_path / "run", "--source-project", source),
                   "source_data: not used when the source is given")
    assert not (tmp_path / "run").exists()


def test_a_project_without_datasets_is_refused_before_anything_is_written(cli, tmp_path):
    """NNC's converter writes no datasets into a prototxt (nin.prototxt): train says how to point it at CSVs instead
    of an IndexError that left network.nntxt behind."""
    from nnc_tools.formats.nnp import load_project, save_project

    from .conftest import tiny_project

    loaded = load_project(tiny_project(tmp_path))
    del loaded.proto.dataset[:]
    del loaded.proto.optimizer[0].dataset_name[:]
    save_project(loaded, tmp_path / "nodata.nntxt")
    assert_refused(cli("train", tmp_path / "nodata.nntxt", "-o", tmp_path / "r"), "nodata.nntxt",
                   "its optimizer Optimizer reads no dataset", "nnc-tl retarget")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text", ["rules:\n  - decay: 1" + "0" * 400 + "\n    from: Affine\n",
                                  "lr_multiplier: {Affine: 1" + "0" * 400 + "}\n"])
def test_a_number_no_float_holds_is_one_line(cli, tmp_path, text):
    project = nnabla_saved(tmp_path / "p.nnp")
    (tmp_path / "o.yaml").write_text(text)
    assert_refused(cli("apply-freeze", project, "-c", tmp_path / "o.yaml"), "o.yaml", "expected a finite number", "(401 digits)")


def test_a_label_no_classifier_has_is_one_line(cli, tmp_path):
    source, train_csv, val_csv = _project_and_csvs(tmp_path)
    rows = train_csv.read_text().splitlines()
    huge = tmp_path / "huge.csv"
    huge.write_text("\n".join(["x:image,y:label", rows[1].rsplit(",", 1)[0] + ",12345678901234567890"] + rows[2:]) + "\n")
    assert_refused(_retarget(cli, tmp_path, source, huge, val_csv), "huge.csv", "label 12345678901234567890 is past the")
    assert not (tmp_path / "t.nnp").exists()
