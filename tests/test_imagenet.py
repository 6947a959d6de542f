"""Transfer from the published ImageNet models, on stand-ins built from the NNC sample projects they were trained from
(``conftest.imagenet_standin``): ``imagenet:NAME`` retargeted to 3 classes of 32x32 colour images, every parameter landing,
the preprocessing fitted as NNC's transfer plugin fits it, and the result training under nnc-tl and nnabla_cli.

The stand-ins of the ten largest models (100 MB to 550 MB of parameters: VGG-11/13/16, AlexNet, ResNet-50/101/152,
ResNeXt-101, SENet-154, DenseNet-161), and ResNet-34 and ShuffleNet-2.0x (like ResNet-18 and ShuffleNet), take about
10 minutes more on 2 cores; they run with ``NNC_TL_BIG_MODELS=1``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.standins import imagenet_standin
from nnc_tools.data.models import MODELS, find_model, model_home, model_path
from nnc_tools.formats.naming import is_statistic
from nnc_tools.formats.nnp import load_project, multipliers

from .conftest import NNC_SAMPLES as NNC_SAMPLES_DIR
from .conftest import needs_samples, params_of, write_image_csv

BIG = {"VGG-11", "VGG-13", "VGG-16", "AlexNet", "ResNet-50", "ResNet-101", "ResNet-152", "ResNeXt-101", "SENet-154",
       "DenseNet-161", "ResNet-34", "ShuffleNet-2.0x"}  # the last two: like ResNet-18 and ShuffleNet, kept for time
HEADS = {"GoogLeNet": "Affine_5"}  # its two auxiliary classifiers reach the loss too: the main one is named
AUXILIARY = {"GoogLeNet": {"Affine_2", "Affine_4"}}  # resized with it: their losses read the same labels
WITH_SAMPLES = [m.name for m in MODELS if m.sample]


@pytest.fixture(scope="session")
def standins(tmp_path_factory):
    """Stand-ins built once a session, by model name."""
    folder, built = tmp_path_factory.mktemp("standins"), {}

    def get(name: str) -> Path:
        if name not in built:
            model = find_model(name)
            built[name] = imagenet_standin(model.sample, folder / model.file)
        return built[name]
    return get


def _install(standins, name: str) -> Path:
    """The stand-in where NNabla's model folder holds the download (as if nnabla.models had fetched it)."""
    target = model_path(find_model(name))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(standins(name), target)
    return target


@pytest.fixture
def images(tmp_path):
    return (write_image_csv(tmp_path, 6, classes=3, size=32, channels=3, name="training"),
            write_image_csv(tmp_path, 3, classes=3, size=32, channels=3, name="validation", seed=1))


def _big(name):
    return pytest.param(name, marks=[pytest.mark.slow, pytest.mark.skipif(
        not os.environ.get("NNC_TL_BIG_MODELS"), reason="100-550 MB of parameters: set NNC_TL_BIG_MODELS=1")])


@needs_samples
@pytest.mark.slow
@pytest.mark.parametrize("name", [_big(n) if n in BIG else n for n in WITH_SAMPLES])
def test_every_model_retargets_with_every_parameter_landing(cli, standins, images, tmp_path, name):
    """All parameters of the source (Repeat blocks under NNabla's ``[i]`` names) reach the target bit for bit but the
    head's; the inputs take the 32x32 images; NNabla loads the result with a 3-class executor."""
    import nnabla as nn
    from nnabla.utils.load import load as nnabla_load

    source = _install(standins, name)
    train_csv, val_csv = images
    target = tmp_path / "t.nnp"
    extra = ["--head", HEADS[name]] if name in HEADS else []
    result = cli("retarget", f"imagenet:{name}", "-o", target, "--train-csv", train_csv, "--val-csv", val_csv,
                 "-c", "last-fc-only", "--batch-size", "3", "--epochs", "1", *extra)
    assert result.code == 0, result.err
    assert "have no values" not in result.out and "fitted to your images" in result.out
    before, after = params_of(source), params_of(target)
    assert set(before) == set(after) and len(before) > 0
    head = result.out.split("head ", 1)[1].split(" ", 1)[0]
    drawn = result.out.split("re-initialised ", 1)[1].splitlines()[0].split(", ")
    moved = [n for n in before if before[n].data.tobytes() != after[n].data.tobytes()]
    assert set(moved) == set(drawn) and {n.rsplit("/", 2)[0] for n in drawn} == {head} | AUXILIARY.get(name, set()), moved
    proto = load_project(target).proto
    trained = {n for n, m in multipliers(proto.optimizer[0]).items() if m > 0 and not is_statistic(n)}
    assert trained == {n for n in before if n.startswith(head + "/")}  # last-fc-only: the head and nothing else
    nn.clear_parameters()
    info = nnabla_load([str(target)], prepare_data_iterator=False, batch_size=2)
    assert [tuple(v.variable_instance.shape) for e in info.executors.values() for v in e.output_assign] == [(2, 3)]
    assert [tuple(v.variable_instance.shape) for e in info.executors.values() for v in e.dataset_assign] == [(2, 3, 32, 32)]
    for network in proto.network:  # every loss reads 3 class scores (GoogLeNet's auxiliary ones too)
        shapes = {v.name: list(v.shape.dim) for v in network.variable}
        assert all(shapes[f.input[0]][-1] == 3 for f in network.function if f.type == "SoftmaxCrossEntropy"), network.name
    nn.clear_parameters()


@needs_samples
@pytest.mark.slow
def test_resnet18_trains_under_nnc_tl_and_nnabla_cli(cli, standins, images, tmp_path):
    """The retargeted ResNet-18 trains an epoch under nnc-tl (frozen backbone kept bit for bit, Batch Normalization
    on its running statistics) and under `nnabla_cli train -c T -p T`."""
    _install(standins, "ResNet-18")
    train_csv, val_csv = images
    target = tmp_path / "r18.nnp"
    assert cli("retarget", "imagenet:ResNet-18", "-o", target, "--train-csv", train_csv, "--val-csv", val_csv,
               "-c", "last-fc-only", "--batch-size", "3", "--epochs", "1").code == 0
    result = cli("train", target, "-o", tmp_path / "run", "--workers", "1")
    assert result.code == 0, result.err
    source, trained = params_of(target), params_of(tmp_path / "run" / "results.nnp")
    for name in source:
        same = source[name].data.tobytes() == trained[name].data.tobytes()
        assert same == (not name.startswith("Affine/")), name  # the backbone and its running statistics kept
    out = tmp_path / "cli"
    out.mkdir()
    exe = Path(sys.executable).with_name("nnabla_cli")
    done = subprocess.run([str(exe), "train", "-c", str(target), "-p", str(target), "-o", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "results.nnp").is_file()


@needs_samples
def test_the_runtime_network_predicts_the_same_every_time(standins, images, tmp_path):
    """NNC's ResNet Runtime network draws random crops and flips; the retargeted one takes the validation centre crop,
    so two forward passes over the same image agree (over the source's Runtime they do not; compared where the
    preprocessing ends, as a stand-in's random weights saturate the scores)."""
    import nnabla as nn
    import numpy as np
    from nnabla.utils.nnp_graph import NnpLoader

    from nnc_tools.project.retarget import RetargetOptions, retarget

    source = _install(standins, "ResNet-18")
    train_csv, val_csv = images
    target = tmp_path / "r18.nnp"
    result = retarget("imagenet:ResNet-18", target, RetargetOptions(train_csv, val_csv, batch_size=1))
    assert any("centre crop" in line and "drew random" in line for line in result.fitted)

    def twice(path):
        nn.clear_parameters()
        net = NnpLoader(str(path)).get_network("Runtime", batch_size=1)
        x, y = next(iter(net.inputs.values())), net.variables["ImageAugmentation"]  # what the first convolution sees
        x.d = np.random.RandomState(0).randint(0, 256, x.shape)
        runs = []
        for _ in range(2):
            y.forward(clear_buffer=True)
            runs.append(y.d.copy())
        nn.clear_parameters()
        return np.array_equal(*runs)

    assert twice(target) and not twice(source)


def test_a_project_that_is_not_an_imagenet_model_is_named(cli, tmp_path):
    result = cli("retarget", "imagenet:ResNet-7", "-o", tmp_path / "t.nnp", "--train-csv", "x.csv", "--val-csv", "x.csv")
    assert result.code == 2 and "no ImageNet model called 'ResNet-7'" in result.err and "ResNet-18" in result.err
    assert not (tmp_path / "t.nnp").exists() and not model_home().exists()


@needs_samples
def test_grey_images_for_a_colour_network_are_one_line(cli, standins, tmp_path):
    _install(standins, "SqueezeNet-1.1")
    grey = write_image_csv(tmp_path, 3, classes=3, size=32, channels=1, name="training")
    result = cli("retarget", "imagenet:SqueezeNet-1.1", "-o", tmp_path / "t.nnp", "--train-csv", grey, "--val-csv", grey)
    assert result.code == 2 and "is 1x32x32" in result.err and "3x32x32" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "t.nnp").exists()


@needs_samples
@pytest.mark.parametrize("sample", ["resnet-18", "shufflenet", "senet-154"])
def test_repeat_blocks_expand_to_the_names_nnablas_loader_gives(sample):
    """``expand_repeats`` names every variable and parameter as NNabla's loader does, in an order where each function
    follows what it reads (what the frozen-prefix cache walks)."""
    import nnabla as nn
    from nnabla.utils.load import load as nnabla_load

    from nnc_tools.formats.nnp import load_project
    from nnc_tools.formats.repeat import expand_repeats

    prototxt = NNC_SAMPLES_DIR / f"{sample}.prototxt"
    network = load_project(prototxt).proto.network[0]
    expanded = expand_repeats(network)
    nn.clear_parameters()
    info = nnabla_load([str(prototxt)], prepare_data_iterator=False, batch_size=1)
    loaded = info.networks[network.name]
    ours = {v.name for v in expanded.variable if v.type != "Parameter"}
    assert ours == set(loaded.variables) and any("[" in name for name in ours)
    assert {v.name for v in expanded.variable if v.type == "Parameter"} == set(nn.get_parameters(grad_only=False))
    nn.clear_parameters()
    known = {v.name for v in expanded.variable if v.type == "Parameter"} | set(loaded.inputs if hasattr(loaded, "inputs") else [])
    known |= {v.name for v in expanded.variable} - {o for f in expanded.function for o in f.output}
    for f in expanded.function:
        assert all(name in known for name in f.input), f.name
        known.update(f.output)


@needs_samples
@pytest.mark.slow
def test_a_frozen_imagenet_backbone_is_computed_once_per_image(cli, standins, images, tmp_path):
    """last-fc-only with --fixed-crop: the cache reaches through ResNet-18's Repeat blocks to the pooling before the
    head, and the monitors take it too; without --fixed-crop the random augmentation keeps the backbone uncached."""
    _install(standins, "ResNet-18")
    train_csv, val_csv = images
    for fixed in (True, False):
        target = tmp_path / f"r18-{fixed}.nnp"
        result = cli("retarget", "imagenet:ResNet-18", "-o", target, "--train-csv", train_csv, "--val-csv", val_csv,
                     "-c", "last-fc-only", "--batch-size", "3", "--epochs", "2", *(["--fixed-crop"] if fixed else []))
        assert result.code == 0, result.err
        assert ("takes Validation5's centre crop instead of random crops" in result.out) == fixed
        run = cli("train", target, "-o", tmp_path / f"run-{fixed}", "--workers", "1")
        assert run.code == 0, run.err
        cached = "functions up to AveragePooling computed once per image" in run.out + run.err
        assert cached == fixed, run.out + run.err
        assert "also for the monitors" in run.out + run.err or not fixed


def test_a_schedule_over_no_iterations_is_one_line_and_retarget_spans_it(cli, tmp_path):
    """NNC's ImageNet projects carry a Cosine schedule with max_iter 0, which NNabla divides by: train says so in one
    line (it was a ZeroDivisionError); retarget sets it to epochs x iterations per epoch."""
    from nnc_tools.formats.nnp import save_project

    from .conftest import tiny_project

    project = tiny_project(tmp_path)
    loaded = load_project(project)
    solver = loaded.proto.optimizer[0].solver
    solver.lr_scheduler_type = "Cosine"
    solver.cosine_scheduler_param.max_iter = 0
    broken = tmp_path / "cosine.nnp"
    save_project(loaded, broken)
    result = cli("train", broken, "-o", tmp_path / "run")
    assert result.code == 2 and "Cosine learning-rate schedule has max_iter 0" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    csv = write_image_csv(tmp_path, 12, name="t")
    fixed = tmp_path / "fixed.nnp"
    assert cli("retarget", broken, "-o", fixed, "--train-csv", csv, "--val-csv", csv, "--epochs", "3",
               "--batch-size", "4").code == 0
    assert load_project(fixed).proto.optimizer[0].solver.cosine_scheduler_param.max_iter == 9
    assert cli("train", fixed, "-o", tmp_path / "run2").code == 0


def test_the_shipped_overlays(cli, tmp_path, monkeypatch):
    """`-c last-fc-only` and `-c all` where a file is expected: the plugin's two modes (a file of that name wins)."""
    from .conftest import tiny_project

    project = tiny_project(tmp_path)
    out = tmp_path / "frozen.nnp"
    assert cli("apply-freeze", project, "-c", "last-fc-only", "-o", out).code == 0
    trained = {n for n, m in multipliers(load_project(out).proto.optimizer[0]).items() if m > 0}
    assert trained == {"Affine/affine/W", "Affine/affine/b"}
    back = tmp_path / "all.nnp"
    assert cli("apply-freeze", out, "-c", "all", "-o", back).code == 0
    values = {n: m for n, m in multipliers(load_project(back).proto.optimizer[0]).items() if not is_statistic(n)}
    assert set(values.values()) == {1.0} and len(values) == 6
    (tmp_path / "all").write_text("freeze: [Convolution]\n")
    monkeypatch.chdir(tmp_path)
    assert cli("apply-freeze", out, "-c", "all", "-o", tmp_path / "file.nnp").code == 0
    assert multipliers(load_project(tmp_path / "file.nnp").proto.optimizer[0])["Convolution/conv/W"] == 0


@needs_samples
@pytest.mark.slow
def test_the_experiment_from_an_imagenet_model(standins, tmp_path):
    """`experiment transfer --source-project imagenet:NAME`: the arms are the published model retargeted, and the report
    names the model, where it came from, its sha256 and the crop it classifies."""
    import hashlib

    from nnc_tools.experiment.config import load_config
    from nnc_tools.experiment.transfer import run_transfer

    source = _install(standins, "SqueezeNet-1.1")
    config_file = tmp_path / "c.yaml"
    config_file.write_text("target_recipe: cifar100-aquatic\ntarget_epochs: 1\nbatch_size: 8\nsolver: Momentum\n"
                           "lr: 0.001\nseeds: 1\narms: [scratch, transfer]\nsynthetic_per_class: {target: 5}\n")
    run = tmp_path / "run"
    run_transfer(run, load_config(config_file), synthetic=True, source_project="imagenet:SqueezeNet-1.1")
    md = (run / "report.md").read_text()
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    assert "ImageNet SqueezeNet-1.1" in md and sha in md and "227x227 crop" in md, md[:3000]
    transfer = params_of(run / "transfer-s0" / "project.nnp")
    moved = [n for n, v in params_of(source).items() if transfer[n].data.tobytes() != v.data.tobytes()]
    assert len(moved) == 2 and len(transfer) > 40  # the head's W and b drawn anew; the model's own weights kept


@needs_samples
@pytest.mark.slow
def test_input_size_runs_the_network_smaller_or_says_it_cannot(cli, standins, images, tmp_path):
    """--input-size 112: ResNet-18's augmentations give 112x112, its global pooling still covers its (now 4x4) input,
    every shape follows, and it trains; GoogLeNet's auxiliary Affine layers fix their map size: one line, nothing
    written."""
    _install(standins, "ResNet-18")
    train_csv, val_csv = images
    target = tmp_path / "r18-112.nnp"
    result = cli("retarget", "imagenet:ResNet-18", "-o", target, "--train-csv", train_csv, "--val-csv", val_csv,
                 "-c", "last-fc-only", "--batch-size", "3", "--epochs", "1", "--input-size", "112")
    assert result.code == 0, result.err
    assert "Training: runs at 112x112 instead of 224x224 (--input-size; about 0.25x the cost per image)" in result.out
    proto = load_project(target).proto
    for network in proto.network:
        shapes = {v.name: list(v.shape.dim) for v in network.variable}
        pooling = next(f for f in network.function if f.type == "AveragePooling")
        assert list(pooling.average_pooling_param.kernel.dim) == [4, 4] and shapes[pooling.input[0]][1:] == [512, 4, 4]
        assert shapes[pooling.output[0]][1:] == [512, 1, 1]
    assert cli("train", target, "-o", tmp_path / "run", "--workers", "1").code == 0
    _install(standins, "GoogLeNet")
    refused = cli("retarget", "imagenet:GoogLeNet", "--head", "Affine_5", "-o", tmp_path / "g.nnp", "--train-csv",
                  train_csv, "--val-csv", val_csv, "--input-size", "112")
    assert refused.code == 2 and "--input-size 112: Train cannot run at that size" in refused.err
    assert len(refused.err.strip().splitlines()) == 1 and not (tmp_path / "g.nnp").exists()
