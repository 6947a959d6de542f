"""`nnc-tl train` / `evaluate`: multipliers honoured exactly (against plain NNabla solvers), frozen means untouched and no
backward work, frozen BN on running statistics, resume after SIGKILL bit-identical, results NNC and nnabla_cli know."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import nnabla.solvers as S
import numpy as np
import pytest
import yaml
from PIL import Image

from nnc_tools.formats.nnp import Project, load_project, multipliers, save_project
from nnc_tools.formats.parameters import Parameter
from nnc_tools.project.freeze import apply_freeze
from nnc_tools.project.passes import solver_proto
from nnc_tools.training.train import TrainOptions, train

from .conftest import (
    assert_monitored_alike,
    assert_refused,
    assert_trained_alike,
    frozen_tiny_project,
    params_of,
    tiny_contents,
    tiny_project,
    write_image_csv,
    write_images,
)


def test_frozen_parameters_stay_bit_identical_others_move(tmp_path):
    project = tiny_project(tmp_path)
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution]\n")
    apply_freeze(project, overlay)
    result = train(project, tmp_path / "r", TrainOptions(progress=False))
    before, after = params_of(project), params_of(tmp_path / "r" / "results_current.nnp")
    for name in ("Convolution/conv/W", "Convolution/conv/b"):
        assert before[name].data.tobytes() == after[name].data.tobytes()
    for name in ("Affine/affine/W", "BatchNormalization/bn/gamma"):
        assert before[name].data.tobytes() != after[name].data.tobytes()
    assert result.summary.frozen_parameters == ["Convolution/conv/W", "Convolution/conv/b"]
    for name in ("results.nnp", "results_current.nnp", "monitoring_report.yml", "training_log.csv", "learning_curve.png",
                 "confusion_matrix.csv", "confusion_matrix.png", "summary.json"):
        assert (tmp_path / "r" / name).is_file(), name
    report = yaml.safe_load((tmp_path / "r" / "monitoring_report.yml").read_text())
    assert set(report) == {0, 1} and {"cost", "valid_error"} <= set(report[1]) and "train_error" in report[1]
    # what we write keeps the project's multipliers, so NNC and nnabla_cli see the same freeze
    assert multipliers(load_project(tmp_path / "r" / "results.nnp").proto.optimizer[0])["Convolution/conv/W"] == 0
    from nnc_tools.training.engine import nnabla_load

    for name in ("results.nnp", "results_current.nnp"):  # nnabla_cli's loader takes both
        info = nnabla_load([str(tmp_path / "r" / name)], prepare_data_iterator=False)
        assert set(info.networks) == {"Main", "MainValidation", "MainRuntime"} and "Optimizer" in info.optimizers
    assert np.array_equal(nn.get_parameters(grad_only=False)["Affine/affine/W"].d, after["Affine/affine/W"].data)


def test_frozen_bn_runs_on_running_statistics_unless_batch(tmp_path):
    project = frozen_tiny_project(tmp_path)
    train(project, tmp_path / "inference", TrainOptions(progress=False))
    before = params_of(project)
    after = params_of(tmp_path / "inference" / "results_current.nnp")
    for name in ("BatchNormalization/bn/mean", "BatchNormalization/bn/var", "BatchNormalization/bn/beta"):
        assert before[name].data.tobytes() == after[name].data.tobytes(), name
    def main_bn(path):
        net = next(n for n in load_project(path).proto.network if n.name == "Main")
        return next(f for f in net.function if f.type == "BatchNormalization").batch_normalization_param.batch_stat

    assert main_bn(project) is True and main_bn(tmp_path / "inference" / "network.nntxt") is False
    train(project, tmp_path / "batch", TrainOptions(progress=False, frozen_bn="batch"))
    moved = params_of(tmp_path / "batch" / "results_current.nnp")
    assert before["BatchNormalization/bn/var"].data.tobytes() != moved["BatchNormalization/bn/var"].data.tobytes()
    assert before["BatchNormalization/bn/beta"].data.tobytes() == moved["BatchNormalization/bn/beta"].data.tobytes()


def test_frozen_prefix_gets_no_backward(tmp_path, monkeypatch):
    """The run itself (one worker, no feature cache, so the frozen prefix is in the graph): every backward of the
    training steps stops at the first trained layer; the frozen Convolution, its BN and ReLU are never run backward."""
    import nnc_tools.training.train as train_module

    called = []
    step = train_module.train_step

    def recording_step(*args, **kwargs):  # the run's own step, with a hook that records each backward function
        return step(*args, **{**kwargs, "function_pre_hook": lambda f: called.append(f.info.type_name)})

    monkeypatch.setattr(train_module, "train_step", recording_step)
    train(frozen_tiny_project(tmp_path), tmp_path / "r", TrainOptions(epochs=1, workers=1, cache_frozen="off", progress=False))
    assert "Affine" in called
    assert "Convolution" not in called and "BatchNormalization" not in called and "ReLU" not in called


def test_the_backward_check_sees_a_trained_prefix(tmp_path, monkeypatch):
    """The same observation on the project before it was frozen: the Convolution is run backward, so the check above
    can fail."""
    import nnc_tools.training.train as train_module

    called = []
    step = train_module.train_step
    monkeypatch.setattr(train_module, "train_step", lambda *a, **k: step(
        *a, **{**k, "function_pre_hook": lambda f: called.append(f.info.type_name)}))
    train(tiny_project(tmp_path), tmp_path / "r", TrainOptions(epochs=1, workers=1, cache_frozen="off", progress=False))
    assert "Convolution" in called


# ------------------------------------------------------------------------------------------ exact multipliers, every solver

SOLVERS = ["Sgd", "Momentum", "Nesterov", "Adam", "AdamW", "AdaBelief", "RMSprop", "RMSpropGraves", "Adagrad", "Adadelta",
           "Adamax", "AMSGRAD", "AdaBound", "AMSBound", "Lars", "Lamb", "Lion", "SgdW"]


def affine_project(folder: Path, solver: str, lr: float, weight_decay: float, mults: dict) -> Path:
    """x (1x8x8) -> Affine(3) -> softmax cross entropy; one full batch of 12 rows per iteration."""
    csv = write_images(folder, 12, name="training")
    nn.clear_parameters()
    x, t = nn.Variable((12, 1, 8, 8)), nn.Variable((12, 1))
    loss = F.mean(F.softmax_cross_entropy(PF.affine(x, 3, name="Affine"), t))
    from nnabla.utils.save import create_proto

    proto = create_proto({"networks": [{"name": "Main", "batch_size": 12, "outputs": {"loss": loss}, "names": {"x": x, "y": t}}]})
    proto.training_config.max_epoch, proto.training_config.iter_per_epoch = 3, 1
    d = proto.dataset.add()
    d.name, d.uri, d.batch_size, d.shuffle = "Training", csv.name, 12, True
    d.variable.extend(["x", "y"])
    o = proto.optimizer.add()
    o.name, o.network_name = "Optimizer", "Main"
    o.dataset_name.append("Training")
    o.solver.CopyFrom(solver_proto(solver, lr, allowed=SOLVERS))
    o.solver.weight_decay = weight_decay
    for var, data in (("x", "x"), ("y", "y")):
        dv = o.data_variable.add()
        dv.variable_name, dv.data_name = var, data
    o.loss_variable.add().variable_name = "loss"
    for name, m in mults.items():
        pv = o.parameter_variable.add()
        pv.variable_name, pv.learning_rate_multiplier = name, m
    nn.get_parameters(grad_only=False)["Affine/affine/b"].d = [0.1, -0.2, 0.05]  # Lamb's trust ratio leaves zeros alone
    params = OrderedDict((k, Parameter(k, v.d.copy())) for k, v in nn.get_parameters(grad_only=False).items())
    path = folder / "affine.nnp"
    save_project(Project(proto, params), path)
    return path


def reference_run(project: Path, solver: str, mults: dict) -> dict:
    """Plain NNabla: one solver per parameter at lr x multiplier, the same data, nnabla_cli's update order."""
    from nnc_tools.data.decoded import load_dataset

    loaded = load_project(project)
    o = loaded.proto.optimizer[0]
    param = getattr(o.solver, o.solver.WhichOneof("parameter"))
    fields = {f.name: getattr(param, f.name) for f in param.DESCRIPTOR.fields}
    lr_key = next(k for k in ("lr", "alpha", "eta") if k in fields)
    nn.clear_parameters()
    x, t = nn.Variable((12, 1, 8, 8)), nn.Variable((12, 1))
    loss = F.mean(F.softmax_cross_entropy(PF.affine(x, 3, name="Affine"), t))
    params = nn.get_parameters(grad_only=False)
    for name, p in loaded.parameters.items():
        params[name].d = p.data
    factory = getattr(S, solver)
    accepted = inspect.signature(factory).parameters
    solvers = []
    for name, m in mults.items():
        kwargs = {k: v for k, v in fields.items() if k in accepted}
        kwargs[lr_key] = fields[lr_key] * m
        s = factory(**kwargs)
        s.set_parameters({name: params[name]})
        solvers.append(s)
    data = load_dataset(project.parent / "training.csv", project.parent / "refcache")
    batch = data.batch(np.arange(12))
    x.d, t.d = batch["x"], batch["y"]
    for _ in range(3):
        loss.forward()
        for s in solvers:
            s.zero_grad()
        loss.backward(grad=1.0 / loss.size)
        for s in solvers:
            if o.solver.weight_decay > 0:
                s.weight_decay(o.solver.weight_decay)
            s.update()
    return {k: v.d.copy() for k, v in params.items()}


@pytest.mark.parametrize("solver", SOLVERS)
def test_fractional_multiplier_is_exactly_a_scaled_learning_rate(tmp_path, solver):
    mults = {"Affine/affine/W": 0.5, "Affine/affine/b": 2.5}
    project = affine_project(tmp_path, solver, 0.01, 1e-4, mults)
    train(project, tmp_path / "r", TrainOptions(progress=False, seed=3))
    ours = params_of(tmp_path / "r" / "results_current.nnp")
    expected = reference_run(project, solver, mults)
    start = params_of(project)
    for name in mults:
        assert not np.array_equal(ours[name].data, start[name].data), f"{solver}: {name} did not move"
        np.testing.assert_allclose(ours[name].data, expected[name], rtol=1e-5, atol=1e-7, err_msg=f"{solver} {name}")
    # and it is not what the full rate gives (what nnabla_cli would do with 0.5)
    full = reference_run(project, solver, {k: 1.0 for k in mults})
    assert not np.allclose(ours["Affine/affine/W"].data, full["Affine/affine/W"], rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------------------ resume, CLI


TRAIN = [sys.executable, "-m", "nnc_tools.cli", "train"]


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    project = tiny_project(tmp_path, n_train=480, epochs=6)
    whole = subprocess.run(TRAIN + [str(project), "-o", str(tmp_path / "whole"), "--seed", "7"], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(TRAIN + [str(project), "-o", str(out), "--seed", "7"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint.zip").exists():
        time.sleep(0.01)
    time.sleep(0.05)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    import zipfile

    with zipfile.ZipFile(out / "checkpoint.zip") as zf:
        assert json.loads(zf.read("state.json"))["epoch"] < 6  # killed mid-run
    again = subprocess.run(TRAIN + [str(project), "-o", str(out), "--seed", "7"], capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = subprocess.run(TRAIN + [str(project), "-o", str(out), "--seed", "7", "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = params_of(tmp_path / "whole" / "results_current.nnp"), params_of(out / "results_current.nnp")
    assert list(a) == list(b)
    for name in a:
        assert a[name].data.tobytes() == b[name].data.tobytes(), name
    assert json.loads((out / "summary.json").read_text())["epochs"] == 6


def test_same_seed_same_bits_and_weights_flag(tmp_path):
    project = tiny_project(tmp_path)
    train(project, tmp_path / "a", TrainOptions(progress=False, seed=1))
    train(project, tmp_path / "b", TrainOptions(progress=False, seed=1))
    a, b = params_of(tmp_path / "a" / "results_current.nnp"), params_of(tmp_path / "b" / "results_current.nnp")
    assert all(a[k].data.tobytes() == b[k].data.tobytes() for k in a)
    # --weights: start from a's trained parameters; frozen ones must equal them exactly
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution]\n")
    apply_freeze(project, overlay)
    result = train(project, tmp_path / "w", TrainOptions(progress=False, weights=tmp_path / "a" / "results.nnp"))
    w = params_of(tmp_path / "w" / "results_current.nnp")
    source = params_of(tmp_path / "a" / "results.nnp")
    assert w["Convolution/conv/W"].data.tobytes() == source["Convolution/conv/W"].data.tobytes()
    assert result.reinitialised == []


@pytest.mark.slow
def test_progress_lines_once_on_stderr_and_none_with_quiet(tmp_path):
    """The library reports through logging and the CLI prints each line once (NNabla's own root handler would print it
    again); -q leaves only the result on stdout."""
    project = tiny_project(tmp_path, epochs=1)
    loud = subprocess.run(TRAIN + [str(project), "-o", str(tmp_path / "loud"), "--workers", "1"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    assert loud.stderr.count("epoch 1/1 cost=") == 1 and loud.stderr.count("frozen-prefix cache: not used") == 1
    quiet = subprocess.run(TRAIN + [str(project), "-o", str(tmp_path / "quiet"), "--workers", "1", "-q"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "epoch 1/1" not in quiet.stderr and "frozen-prefix cache" not in quiet.stderr
    assert "best epoch 1 of 1" in quiet.stdout


def test_cudnn_without_the_extension_names_the_pip_line(cli, tmp_path):
    try:
        import nnabla_ext.cudnn  # noqa: F401

        pytest.skip("the CUDA extension is installed here")
    except ImportError:
        pass
    project = tiny_project(tmp_path)
    result = cli("train", project, "-o", tmp_path / "r", "--context", "cudnn")
    assert result.code == 2 and "pip install nnabla-ext-cuda120==1.39.0" in result.err
    assert not (tmp_path / "r").exists()


def test_evaluate_cli(cli, tmp_path):
    project = tiny_project(tmp_path)
    train(project, tmp_path / "r", TrainOptions(progress=False))
    result = cli("evaluate", tmp_path / "r" / "results.nnp", "--dataset", tmp_path / "validation.csv", "-o", tmp_path / "e")
    assert result.code == 0, result.err
    assert "accuracy" in result.out and "c2" in result.out
    matrix = (tmp_path / "e" / "confusion_matrix.csv").read_text().splitlines()
    assert matrix[0] == "true \\ predicted,c0,c1,c2" and len(matrix) == 4
    data = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert sum(map(sum, data["confusion_matrix"])) == 9 and 0 <= data["accuracy"] <= 1
    assert (tmp_path / "e" / "confusion_matrix.png").stat().st_size > 1000


# ------------------------------------------------------------------------------------------------- frozen-prefix cache


def test_cache_frozen_gives_the_same_parameters(tmp_path, messages):
    project = frozen_tiny_project(tmp_path)
    train(project, tmp_path / "off", TrainOptions(progress=False, cache_frozen="off", seed=2))
    train(project, tmp_path / "on", TrainOptions(progress=False, cache_frozen="on", seed=2))
    err = messages.text
    assert "frozen-prefix cache: 4 functions up to MaxPooling computed once per image (stopped at Affine" in err
    off, on = assert_trained_alike(tmp_path / "off", tmp_path / "on")
    assert not np.array_equal(on["Affine/affine/W"].data, params_of(project)["Affine/affine/W"].data)
    # the monitors (MainValidation shares the frozen prefix) ran on cached features too, with the same values
    assert "frozen-prefix cache: also for the monitors on Validation (9 images)" in err
    _, report_on = assert_monitored_alike(tmp_path / "off", tmp_path / "on")
    assert "valid_error" in report_on[1] and "train_error" in report_on[1]
    # a tiny budget puts the features in a memory-mapped file in the result folder, same result
    train(project, tmp_path / "mm", TrainOptions(progress=False, cache_frozen="on", seed=2, cache_budget=1))
    assert (tmp_path / "mm" / "cache" / "frozen_features.npy").is_file()
    mm = params_of(tmp_path / "mm" / "results_current.nnp")
    np.testing.assert_allclose(mm["Affine/affine/W"].data, on["Affine/affine/W"].data, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("workers", [1, 2])
def test_cached_monitors_when_the_training_set_monitor_comes_first(tmp_path, workers):
    """One epoch: the training-set monitor (listed first) and the validation monitor both run in the epoch whose
    graph is first cut; the validation features must be computed through the prefix before either monitor cuts the
    graph they share (once that failed with 1 worker and gave the training batch's features with 2)."""
    project = frozen_tiny_project(tmp_path, epochs=1)
    for cache in ("off", "on"):
        train(project, tmp_path / cache, TrainOptions(progress=False, cache_frozen=cache, seed=2, workers=workers))
    _, on = assert_monitored_alike(tmp_path / "off", tmp_path / "on")
    assert set(on[0]) == {"cost", "train_error", "valid_error"}


def test_cache_frozen_on_without_a_legal_prefix_says_why(cli, tmp_path):
    project = tiny_project(tmp_path)
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Affine]\n")  # the first layer trains: nothing to cache
    apply_freeze(project, overlay, tmp_path / "head.nnp")
    result = cli("train", tmp_path / "head.nnp", "-o", tmp_path / "r", "--cache-frozen", "on")
    assert result.code == 2 and "Convolution/conv/W is trained" in result.err
    overlay.write_text("freeze: [Convolution]\n")  # BatchNormalization trains on batch statistics: the cut is after Convolution
    apply_freeze(project, overlay)
    auto = cli("train", project, "-o", tmp_path / "r2")
    assert auto.code == 0, auto.err
    assert "frozen-prefix cache: 1 functions up to Convolution computed once per image (stopped at BatchNormalization" in auto.err


@pytest.mark.slow
def test_exported_mini_vggnet_mark2_learns_the_synthetic_aquatic_set(tmp_path, monkeypatch):
    """The reference network, exported and trained from scratch for a few epochs: validation error well below chance."""
    from nnc_tools.data.recipes import make_dataset
    from nnc_tools.project.export import export_network

    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "aquatic"
    make_dataset("cifar100-aquatic", data, synthetic=True, synthetic_per_class=20)
    project = tmp_path / "m.nnp"
    export_network("mini_vggnet_mark2", project, train_csv=data / "training.csv", val_csv=data / "validation.csv",
                   epochs=6, batch_size=8, solver="Adam", lr=0.001)
    result = train(project, tmp_path / "r", TrainOptions(progress=False))
    chance = float(np.log(10))  # the cross entropy of a uniform guess over 10 classes
    errors = [r.valid_error for r in result.history]
    assert errors[-1] < 0.8 * chance, errors
    assert max(r.valid_accuracy for r in result.history) >= 0.25


def test_a_missing_dataset_is_one_line_and_no_result_folder(cli, tmp_path):
    project = tiny_project(tmp_path)
    (tmp_path / "validation.csv").unlink()
    result = cli("train", project, "-o", tmp_path / "r")
    assert_refused(result, "validation.csv")
    assert not (tmp_path / "r").exists()


def test_nnc_sample_datasets_in_the_install_folder_are_named(cli, tmp_path):
    sample = Path(__file__).resolve().parents[2] / "shared" / "nnc-samples" / "02_binary_cnn.prototxt"
    if not sample.is_file():
        pytest.skip(f"{sample} is absent (../shared not checked out)")
    result = cli("train", sample, "-o", tmp_path / "r")
    assert result.code == 2 and "{SDCPATH}" in result.err and "local CSV" in result.err
    assert not (tmp_path / "r").exists()


def test_decoded_datasets_are_reused_until_a_file_changes(tmp_path, monkeypatch):
    import nnabla.utils.data_iterator as iterators

    from nnc_tools.data.decoded import load_dataset

    csv = write_image_csv(tmp_path, 12, name="d")
    first = load_dataset(csv, tmp_path / "c1")
    real = iterators.data_iterator_csv_dataset

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(iterators, "data_iterator_csv_dataset", refuse)
    again = load_dataset(csv, tmp_path / "c2")  # another run, same files: no decoding
    assert all(np.array_equal(first.arrays[k], again.arrays[k]) for k in first.arrays)
    assert again.arrays["x"].dtype == np.uint8
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "d" / "0.png")  # an image changes
    os.utime(tmp_path / "d" / "0.png", ns=(1, 1))
    monkeypatch.setattr(iterators, "data_iterator_csv_dataset", real)
    changed = load_dataset(csv, tmp_path / "c3")
    assert changed.arrays["x"][0].max() == 0 and first.arrays["x"][0].max() > 0


def test_frozen_bn_batch_trains_on_batch_statistics_even_where_the_project_says_running(tmp_path):
    """apply-freeze's default (frozen_bn: inference) writes batch_stat false; train --frozen-bn batch still runs such a
    BN on batch statistics, as its help says, so its running statistics move."""
    project = tiny_project(tmp_path)
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution, BatchNormalization]\n")
    apply_freeze(project, overlay)
    train(project, tmp_path / "batch", TrainOptions(progress=False, frozen_bn="batch"))
    before, after = params_of(project), params_of(tmp_path / "batch" / "results_current.nnp")
    assert before["BatchNormalization/bn/var"].data.tobytes() != after["BatchNormalization/bn/var"].data.tobytes()
    assert before["BatchNormalization/bn/beta"].data.tobytes() == after["BatchNormalization/bn/beta"].data.tobytes()


@pytest.mark.parametrize("classes", [5, 2])
def test_labels_are_checked_against_the_networks_classes(cli, tmp_path, classes):
    """A 3-class network on a CSV with labels up to 4 is refused before training (NNabla would crash with a double
    free); a CSV whose header names 2 classes is refused too (it trained silently on a 3-class head)."""
    project = tiny_project(tmp_path)
    csv = write_image_csv(tmp_path, 24, classes=classes, name="training")
    if classes == 5:  # a header naming no classes: the labels themselves must be checked
        csv.write_text("\n".join(["x:image,y:label"] + csv.read_text().splitlines()[1:]) + "\n")
    result = cli("train", project, "-o", tmp_path / "r", "--epochs", "1", "--workers", "1")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "training.csv" in result.err and not (tmp_path / "r").exists()
    if classes == 5:
        assert "label 3 in row 4 is not one of the 3 classes" in result.err
    else:
        assert "its header names 2 classes, Main's" in result.err and "scores 3" in result.err


def test_evaluate_refuses_a_dataset_naming_other_classes(cli, tmp_path):
    project = tiny_project(tmp_path)
    train(project, tmp_path / "r", TrainOptions(progress=False, epochs=1))
    write_image_csv(tmp_path, 6, classes=2, name="two")
    result = cli("evaluate", tmp_path / "r" / "results.nnp", "--dataset", tmp_path / "two.csv", "-o", tmp_path / "e")
    assert result.code == 2 and "two.csv: its header names 2 classes, results.nnp scores 3" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "e").exists()


def test_train_weights_from_another_network_is_refused(cli, tmp_path):
    project = tiny_project(tmp_path)
    other = tmp_path / "resnet.nnp"  # resnet20's 64x3 head would fit the tiny network's Affine: 7 classes share nothing
    assert cli("export", "resnet20", "-o", other, "--classes", "7").code == 0
    result = cli("train", project, "-o", tmp_path / "r", "--weights", other, "--epochs", "1")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert f"{other}: shares no parameter" in result.err and "closest are" in result.err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("label, message", [("-1", "label -1 in row 2 is not a class index"),
                                            ("7", "label 7 in row 2 is past the 3 classes")])
def test_evaluate_refuses_labels_that_are_no_class(cli, tmp_path, label, message):
    project = tiny_project(tmp_path)
    train(project, tmp_path / "r", TrainOptions(progress=False, epochs=1))
    rows = (tmp_path / "validation.csv").read_text().splitlines()
    rows[2] = rows[2].rsplit(",", 1)[0] + "," + label
    (tmp_path / "bad.csv").write_text("\n".join(rows) + "\n")
    result = cli("evaluate", tmp_path / "r" / "results.nnp", "--dataset", tmp_path / "bad.csv", "-o", tmp_path / "e")
    assert result.code == 2 and message in result.err and "bad.csv" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "e").exists()


def test_resume_continues_the_run_as_it_was_started(tmp_path):
    """train --epochs 1, then --resume without flags: the run stops at its own 1 epoch, not the project's max_epoch."""
    project = tiny_project(tmp_path, epochs=3)
    train(project, tmp_path / "r", TrainOptions(progress=False, epochs=1, batch_size=2))
    result = train(project, tmp_path / "r", TrainOptions(progress=False, resume=True))
    assert [r.epoch for r in result.history] == [1] and result.summary.batch_size == 2
    more = train(project, tmp_path / "r", TrainOptions(progress=False, resume=True, epochs=2))
    assert [r.epoch for r in more.history] == [1, 2]


def test_resume_restores_the_runs_own_settings_and_refuses_contradictions(cli, tmp_path):
    """--resume takes seed, frozen BN, cache choice, workers and batch size from the checkpoint; a flag contradicting
    one is one line; --epochs may raise the count (and says so) but not go below the epochs trained."""
    project = tiny_project(tmp_path, epochs=3)
    first = cli("train", project, "-o", tmp_path / "r", "--epochs", "2", "--seed", "5", "--workers", "1",
                "--cache-frozen", "off", "--batch-size", "2")
    assert first.code == 0, first.err
    before = (tmp_path / "r" / "checkpoint.zip").read_bytes()
    for flags, message in [(["--seed", "6"], "--seed 6 contradicts the run's own --seed 5"),
                           (["--workers", "2"], "--workers 2 contradicts the run's own --workers 1"),
                           (["--cache-frozen", "auto"], "--cache-frozen auto contradicts the run's own --cache-frozen off"),
                           (["--batch-size", "4"], "--batch-size 4 contradicts"),
                           (["--epochs", "1"], "--epochs 1: the run has trained 2 epochs already")]:
        result = cli("train", project, "-o", tmp_path / "r", "--resume", *flags)
        assert_refused(result, message)
        assert (tmp_path / "r" / "checkpoint.zip").read_bytes() == before
    result = cli("train", project, "-o", tmp_path / "r", "--resume", "--epochs", "3", "--seed", "5")
    assert result.code == 0 and "resuming: training to 3 epochs (the run was started for 2)" in result.err, result.err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (summary["epochs"], summary["seed"], summary["workers"], summary["batch_size"]) == (3, 5, 1, 2)


def test_batch_size_flag_makes_an_epoch_one_pass_over_the_data(tmp_path, monkeypatch):
    import nnc_tools.training.train as training

    project = tiny_project(tmp_path)  # 24 rows, iter_per_epoch 6 for its batch of 4
    steps = []
    real = training.train_step
    monkeypatch.setattr(training, "train_step", lambda *a, **k: steps.append(1) or real(*a, **k))
    train(project, tmp_path / "r", TrainOptions(progress=False, epochs=1, batch_size=8, workers=1))
    assert len(steps) == 3
    steps.clear()
    train(project, tmp_path / "s", TrainOptions(progress=False, epochs=1, workers=1))
    assert len(steps) == 6


@pytest.mark.parametrize("damage", ["truncated", "no state"])
def test_a_damaged_checkpoint_is_one_line_and_touches_nothing(cli, tmp_path, damage):
    import zipfile

    project = tiny_project(tmp_path)
    train(project, tmp_path / "r", TrainOptions(progress=False, epochs=1))
    checkpoint = tmp_path / "r" / "checkpoint.zip"
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    else:
        with zipfile.ZipFile(checkpoint, "w") as zf:
            zf.writestr("parameters.h5", b"")
    before = {p: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    result = cli("train", project, "-o", tmp_path / "r", "--resume")
    assert_refused(result, "damaged checkpoint")
    assert {p: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()} == before


def test_a_loss_reduced_to_a_scalar_is_monitored_as_nnabla_cli_does(cli, tmp_path):
    """A classifier saved with nnabla.utils.save whose networks end in F.mean(F.softmax_cross_entropy(...)), the usual
    way to write it: its monitors are batch means, not per-sample values (the monitor used to crash reshaping them)."""
    import nnabla as nn
    import nnabla.functions as F
    import nnabla.parametric_functions as PF
    from nnabla.utils.save import save as nnabla_save

    train_csv = write_image_csv(tmp_path, 16, name="training")
    val_csv = write_image_csv(tmp_path, 6, seed=1, name="validation")
    contents = tiny_contents(batch_size=4)
    nn.clear_parameters()
    x, t = nn.Variable((4, 1, 8, 8)), nn.Variable((4, 1))
    logits = PF.affine(x, 3, name="Affine")
    loss = F.mean(F.softmax_cross_entropy(logits, t))
    contents["networks"] = [
        {"name": "Main", "batch_size": 4, "outputs": {"loss": loss}, "names": {"x": x, "y": t}},
        {"name": "MainValidation", "batch_size": 4, "outputs": {"loss": loss}, "names": {"x": x, "y": t}},
        {"name": "MainRuntime", "batch_size": 4, "outputs": {"y'": F.softmax(logits)}, "names": {"x": x}},
    ]
    contents["optimizers"][0]["solver"].set_parameters(nn.get_parameters(), reset=True)
    contents["datasets"][0]["uri"] = train_csv.name
    contents["datasets"].append(dict(contents["datasets"][0], name="Validation", uri=val_csv.name, shuffle=False))
    contents["monitors"] = [dict(contents["monitors"][0], name="valid_error", dataset="Validation")]
    contents["training_config"]["max_epoch"] = 1
    nnabla_save(str(tmp_path / "p.nnp"), contents)
    result = cli("train", tmp_path / "p.nnp", "-o", tmp_path / "r", "--workers", "1")
    assert result.code == 0, result.err
    report = yaml.safe_load((tmp_path / "r" / "monitoring_report.yml").read_text())
    assert 0 < report[0]["valid_error"] < 10


def test_resuming_a_finished_run_keeps_its_wall_time(tmp_path):
    """--resume on a finished run trains nothing; its summary still says how long the run took, not 0 s (a resumed
    experiment reported "wall time 0 s")."""
    from nnc_tools.training.records import read_summary

    project = tiny_project(tmp_path, epochs=1)
    first = train(project, tmp_path / "r", TrainOptions(progress=False, workers=1))
    again = train(project, tmp_path / "r", TrainOptions(progress=False, resume=True))
    assert first.summary.wall_seconds > 0
    assert again.summary.wall_seconds >= 0.5 * first.summary.wall_seconds  # (it was 0.0: only the resumed part)
    assert read_summary(tmp_path / "r").wall_seconds == again.summary.wall_seconds


def test_nnabla_cli_habits_a_result_folder_and_solver_overrides(cli, tmp_path):
    """What nnabla_cli users type: a result folder where a project is expected (train goes on from its results.nnp,
    evaluate scores it); --solver/--lr override the project's and results.nnp says what trained; --resume keeps them."""
    project = tiny_project(tmp_path)
    assert cli("train", project, "-o", tmp_path / "r", "--epochs", "1", "--workers", "1").code == 0
    again = cli("train", tmp_path / "r", "-o", tmp_path / "r2", "--epochs", "1", "--workers", "1", "--solver", "Adam",
                "--lr", "0.003")
    assert again.code == 0, again.err
    solver = load_project(tmp_path / "r2" / "results.nnp").proto.optimizer[0].solver
    assert solver.type == "Adam" and solver.adam_param.alpha == pytest.approx(0.003)
    assert cli("evaluate", tmp_path / "r2", "--dataset", tmp_path / "validation.csv").code == 0
    resumed = cli("train", tmp_path / "r", "-o", tmp_path / "r2", "--resume", "--lr", "0.1")
    assert resumed.code == 2 and "--lr 0.1 contradicts the run's own --lr 0.003" in resumed.err, resumed.err
    assert "is a folder without results.nnp" in cli("train", tmp_path / "training", "-o", tmp_path / "r3").err


def test_progress_for_those_without_a_progress_bar(tmp_path):
    """progress.txt as nnabla_cli writes it (NNC's console reads it: one line while training, empty at the end), and on a
    console that is no terminal a periodic line with img/s and the epoch's ETA."""
    from nnc_tools.training.records import PROGRESS, ProgressReport

    project = tiny_project(tmp_path)
    train(project, tmp_path / "r", TrainOptions(progress=False, epochs=1, workers=1))
    assert (tmp_path / "r" / PROGRESS).read_text() == ""
    lines = []
    report = ProgressReport(tmp_path, lines.append, every=0.0)
    report.update(1, 3, 5, 20, 0.25, 40, time.monotonic() - 2.0)
    assert (tmp_path / PROGRESS).read_text() == "Training : cost=0.250000 (25.00%)"
    assert lines and lines[0].startswith("epoch 1/3: 5/20 iterations, ") and "img/s, the epoch ends in about" in lines[0]


def test_sigterm_is_ctrl_c_and_two_runs_into_one_folder_are_told_apart(tmp_path):
    """SIGTERM (a scheduler stopping the job) ends train like Ctrl-C: exit 130, no temporary file left, and --resume
    goes on; a second train into a folder a running one holds is one line naming the holder, and touches nothing."""
    project = tiny_project(tmp_path, n_train=480, epochs=100000)  # far more than any machine runs before the signal
    out = tmp_path / "r"
    err = (tmp_path / "stderr.txt").open("w")  # a file, not a pipe: a long run's progress lines would fill a pipe
    proc = subprocess.Popen(TRAIN + [str(project), "-o", str(out), "--workers", "1"], stdout=subprocess.DEVNULL,
                            stderr=err, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint.zip").exists():
        time.sleep(0.01)
    second = subprocess.run(TRAIN + [str(project), "-o", str(out), "--resume", "--workers", "1"], capture_output=True, text=True)
    assert second.returncode == 2 and "is in use by nnc-tl train (pid" in second.stderr, second.stderr
    assert proc.poll() is None, "the first run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    err.close()
    assert code == 130 and "interrupted" in (tmp_path / "stderr.txt").read_text()
    assert not [p.name for p in out.rglob("*.tmp")] and not (out / ".nnc-tl.lock").exists()
    import zipfile

    with zipfile.ZipFile(out / "checkpoint.zip") as zf:
        done = json.loads(zf.read("state.json"))["epoch"]
    resumed = subprocess.run(TRAIN + [str(project), "-o", str(out), "--resume", "--epochs", str(done + 1), "--workers", "1"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_resume_into_another_projects_run_is_refused_untouched(cli, tmp_path):
    """--resume with a project the run was not started on: one line, and that run's folder is left as it was (it used to
    get its network.nntxt overwritten first)."""
    project = tiny_project(tmp_path, epochs=3)
    assert cli("train", project, "-o", tmp_path / "r", "--epochs", "1", "--workers", "1").code == 0
    other = tmp_path / "other"
    other.mkdir()
    other_project = tiny_project(other, classes=4)
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    result = cli("train", other_project, "-o", tmp_path / "r", "--resume")
    assert result.code == 2 and "holds a run of a network other than p.nnp's" in result.err, result.err
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before


def test_the_first_epoch_says_what_the_rest_will_take(cli, tmp_path):
    project = tiny_project(tmp_path, epochs=3)
    result = cli("train", project, "-o", tmp_path / "r", "--workers", "1")
    assert result.code == 0 and "at this pace the other 2 epochs take about" in result.err, result.err
