"""Shared fixtures: small projects written by NNabla's own save(), the NNC samples, and a CLI runner."""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import List, NamedTuple

import pytest
import yaml

logging.getLogger("nnabla").setLevel(logging.WARNING)

import nnabla as nn  # noqa: E402
import nnabla.functions as F  # noqa: E402
import nnabla.parametric_functions as PF  # noqa: E402
import nnabla.solvers as S  # noqa: E402
import numpy as np  # noqa: E402
from nnabla.utils.save import save as nnabla_save  # noqa: E402

from nnc_tools.cli import main  # noqa: E402
from nnc_tools.formats.nnp import load_project  # noqa: E402
from nnc_tools.project.freeze import apply_freeze  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
NNC_SAMPLES = SHARED / "nnc-samples"


@pytest.fixture
def messages(caplog):
    """What the library reports through ``logging`` (the CLI prints it on stderr), at INFO and above."""
    caplog.set_level(logging.INFO, logger="nnc_tools")
    return caplog


def assert_refused(result, *needles):
    """The error contract: exit 2, one line on stderr, no traceback, every needle in that line."""
    lines = result.err.strip().splitlines()
    assert result.code == 2, result
    assert len(lines) == 1 and "Traceback" not in result.err, lines
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


def nnc_samples(pattern: str) -> List[Path]:
    return sorted(NNC_SAMPLES.glob(pattern)) if NNC_SAMPLES.is_dir() else []


needs_samples = pytest.mark.skipif(not NNC_SAMPLES.is_dir(), reason=f"{NNC_SAMPLES} is absent (../shared not checked out)")


def tiny_net(x, classes: int, test: bool):
    """conv -> BN -> ReLU -> pool -> affine -> softmax, named the NNC way."""
    h = PF.convolution(x, 4, (3, 3), pad=(1, 1), name="Convolution")
    h = PF.batch_normalization(h, batch_stat=not test, name="BatchNormalization")
    h = F.relu(h)
    h = F.max_pooling(h, (2, 2))
    return F.softmax(PF.affine(h, classes, name="Affine"))


def tiny_contents(batch_size: int = 4, classes: int = 3, seed: int = 0, net=tiny_net, input_shape=(1, 8, 8)) -> dict:
    """A classifier (``net(x, classes, test)`` gives its probabilities; default a two-layer CNN with NNC names), its
    training/validation networks, an optimizer, datasets and an executor, as nnabla.utils.save takes them."""
    nn.clear_parameters()
    np.random.seed(seed)
    x = nn.Variable((batch_size, *input_shape))
    t = nn.Variable((batch_size, 1))
    loss = F.categorical_cross_entropy(net(x, classes, False), t)  # per example, as NNC's CategoricalCrossEntropy layer
    loss_v = F.categorical_cross_entropy(net(x, classes, True), t)
    y = net(x, classes, True)
    solver = S.Momentum(0.01, 0.9)
    solver.set_parameters(nn.get_parameters())
    return {
        "global_config": {"default_context": nn.Context(["cpu:float"])},
        "training_config": {"max_epoch": 2, "iter_per_epoch": 3, "save_best": True},
        "networks": [
            {"name": "Main", "batch_size": batch_size, "outputs": {"loss": loss}, "names": {"x": x, "y": t}},
            {"name": "MainValidation", "batch_size": batch_size, "outputs": {"loss": loss_v}, "names": {"x": x, "y": t}},
            {"name": "MainRuntime", "batch_size": batch_size, "outputs": {"y'": y}, "names": {"x": x}},
        ],
        "optimizers": [
            {"name": "Optimizer", "solver": solver, "network": "Main", "dataset": "Training", "weight_decay": 0,
             "lr_decay": 1, "lr_decay_interval": 1, "update_interval": 1, "data_variables": {"x": "x", "y": "y"}}
        ],
        "datasets": [
            {"name": "Training", "uri": "training.csv", "cache_dir": "", "variables": {"x": x, "y": t},
             "shuffle": True, "batch_size": batch_size, "no_image_normalization": False},
        ],
        "monitors": [{"name": "valid_error", "network": "MainValidation", "dataset": "Training", "data_variables": {"x": "x", "y": "y"}}],
        "executors": [{"name": "Executor", "network": "MainRuntime", "data": ["x"], "output": ["y'"]}],
    }


def write_image_csv(folder: Path, n: int, *, classes: int = 3, size: int = 8, channels: int = 1, seed: int = 0,
                    name: str = "data") -> Path:
    """A learnable image dataset in NNC's CSV format: class k is noise around grey level 60 + 70k."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    (folder / name).mkdir(parents=True, exist_ok=True)
    rows = ["x:image,y:label;" + ";".join(f"c{k}" for k in range(classes))]
    for i in range(n):
        label = i % classes
        shape = (size, size) if channels == 1 else (size, size, channels)
        pixels = np.clip(rng.normal(60 + 70 * label, 25, size=shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name / f"{i}.png")
        rows.append(f"./{name}/{i}.png,{label}")
    csv = folder / f"{name}.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def nnabla_saved(path: Path, **kwargs) -> Path:
    """Write a tiny project with NNabla's own save() (format from the extension)."""
    nnabla_save(str(path), tiny_contents(), **kwargs)
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own NNC_TL_CACHE (downloads, synthetic archives, decoded datasets), never ~/.cache."""
    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path_factory.mktemp("nnc-tl-cache")))
    monkeypatch.setenv("NNC_TL_MODEL_HOME", str(tmp_path_factory.mktemp("nnc-tl-models") / "imagenet"))
    monkeypatch.delenv("NNABLA_MODELS_URL_BASE", raising=False)


class CliResult(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run `nnc-tl ARGS...` in-process and return (exit code, stdout, stderr)."""

    def run(*args: str) -> CliResult:
        try:
            code = main([os.fspath(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


# ------------------------------------------------------------------------------------------- a small NNC .sdcproj


def layer(i, layer_id, kind, name, props):
    lines = [f"[{{prefix}}Layer_{i}]", f"ID={layer_id}", f"Type={kind}", "Position_0=24", f"Position_1={24 + 48 * i}"]
    props = [("Name", name)] + props
    for k, (key, value) in enumerate(props):
        lines += [f"Property_{k}_Name={key}", f"Property_{k}_Value={value}"]
    lines.append(f"NumProperty={len(props)}")
    return lines


def conv_props(with_lr=True):
    props = [("OutMaps", "8"), ("KernelShape", "3,3"), ("ParameterScope", "*Name"), ("W.Initializer", "NormalConvolutionGlorot")]
    if with_lr:
        props += [("W.LRateMultiplier", "1.0"), ("b.LRateMultiplier", "1.0")]
    return props


BN_PROPS = [("ParameterScope", "*Name"), ("beta.LRateMultiplier", "1.0"), ("gamma.LRateMultiplier", "1.0"),
            ("mean.LRateMultiplier", "0.0"), ("var.LRateMultiplier", "0.0")]


def network_lines(prefix=""):
    # File order differs from network order on purpose: Affine's section comes before the convolutions.
    sections = [
        layer(0, 0, "Input", "Input", [("Size", "3,8,8")]),
        layer(1, 5, "Affine", "Affine", [("OutShape", "10"), ("ParameterScope", "*Name"), ("W.LRateMultiplier", "1.0"),
                                         ("b.LRateMultiplier", "1.0")]),
        layer(2, 1, "Convolution", "Convolution", conv_props()),
        layer(3, 2, "BatchNormalization", "BatchNormalization", BN_PROPS[:3]),  # lacks mean/var properties
        layer(4, 3, "ReLU", "ReLU", []),
        layer(5, 4, "Convolution", "Convolution_2", conv_props(with_lr=False)),  # lacks both properties
    ]
    links = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    lines = [f"[{prefix}Network_Global]", "NumLayer=6", f"NumLink={len(links)}"]
    for s in sections:
        lines += [line.replace("{prefix}", prefix) for line in s]
    for i, (a, b) in enumerate(links):
        lines += [f"[{prefix}Link_{i}]", f"SourceLayerID={a}", "SourcePinIndex=0", f"DestLayerID={b}", "DestPinIndex=0"]
    return lines


def tail_lines(optimizers):
    lines = ["[Dataset_0]", "Name=Training", "URI=training.csv", "[Config]", "MaxEpoch=10", f"NumOptimizer={len(optimizers)}"]
    for i, (name, net) in enumerate(optimizers):
        lines += [f"[Optimizer_{i}]", f"Optimizer_Name={name}", f"Optimizer_NetworkName={net}", "SolverName=Adam",
                  "LearningRateMultiplier=0.5", "LearningRateUpdateInterval=1"]
    lines += ["[Description]", "Text=dataset-require=CIFAR10\\nmade by a test", "[Unknown_Section]", "Whatever=keep me"]
    return lines


def single(newline="\n"):
    lines = ["[Engine]", "SDeepEngineType=NNabla"] + network_lines() + tail_lines([("Optimizer", "Main")])
    return newline.join(lines) + newline


def multi():
    lines = ["[Engine]", "SDeepEngineType=NNabla", "[Global]", "NumNetwork=2", "Network_0=Train", "Network_1=Valid"]
    lines += network_lines("Train_") + network_lines("Valid_")
    lines += tail_lines([("Optimizer", "Train"), ("Optimizer_2", "Valid")])
    return "\n".join(lines) + "\n"


def changed_lines(before: bytes, after: bytes):
    a, b = before.decode().splitlines(keepends=True), after.decode().splitlines(keepends=True)
    return [line for line in difflib.ndiff(a, b) if line[:1] in "+-"]


# ----------------------------------------------------------------------------------------------- training runs


def write_images(folder: Path, n: int, classes: int = 3, seed: int = 0, name: str = "data") -> Path:
    return write_image_csv(folder, n, classes=classes, seed=seed, name=name)


def tiny_project(folder: Path, n_train: int = 24, batch: int = 4, epochs: int = 2, net=tiny_net, classes: int = 3) -> Path:
    """conftest's conv -> BN -> ReLU -> pool -> affine project (or ``net``'s), with training and validation CSVs beside it."""
    from nnabla.utils.save import save as nnabla_save

    train_csv = write_image_csv(folder, n_train, classes=classes, name="training")
    val_csv = write_image_csv(folder, 9, classes=classes, seed=1, name="validation")
    contents = tiny_contents(batch_size=batch, classes=classes, net=net)
    contents["training_config"]["max_epoch"] = epochs
    contents["training_config"]["iter_per_epoch"] = n_train // batch
    contents["datasets"][0]["uri"] = train_csv.name
    validation = dict(contents["datasets"][0], name="Validation", uri=val_csv.name, shuffle=False)
    contents["datasets"].append(validation)
    contents["monitors"] = [dict(contents["monitors"][0], name="train_error", dataset="Training"),
                            dict(contents["monitors"][0], name="valid_error", dataset="Validation")]
    path = folder / "p.nnp"
    nnabla_save(str(path), contents)
    return path


def frozen_tiny_project(folder: Path, **kwargs) -> Path:
    """tiny_project with Convolution and its Batch Normalization frozen (a cacheable prefix)."""
    project = tiny_project(folder, **kwargs)
    overlay = folder / "o.yaml"
    overlay.write_text("frozen_bn: batch\nfreeze: [Convolution, BatchNormalization]\n")  # the project as NNabla saved it
    apply_freeze(project, overlay)
    return project


def params_of(path: Path):
    return load_project(path).parameters


def assert_monitored_alike(a: Path, b: Path):
    """Two result folders report the same monitor values, epoch by epoch (float tolerance); returns both reports."""
    first, second = (yaml.safe_load((folder / "monitoring_report.yml").read_text()) for folder in (a, b))
    assert second.keys() == first.keys()
    for epoch, values in first.items():
        assert second[epoch].keys() == values.keys(), epoch
        for key, value in values.items():
            assert second[epoch][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (epoch, key)
    return first, second


def assert_trained_alike(a: Path, b: Path):
    """Two result folders hold the same trained parameters (float tolerance); returns both parameter sets."""
    first, second = params_of(a / "results_current.nnp"), params_of(b / "results_current.nnp")
    for name in first:
        np.testing.assert_allclose(second[name].data, first[name].data, rtol=1e-5, atol=1e-6, err_msg=name)
    return first, second


def parameters_equal(a, b) -> bool:
    """Same names in the same order, same ``need_grad``, byte-identical arrays (dtype and shape included)."""
    if list(a) != list(b):
        return False
    return all(
        a[k].need_grad == b[k].need_grad
        and a[k].data.dtype == b[k].data.dtype
        and a[k].data.shape == b[k].data.shape
        and a[k].data.tobytes() == b[k].data.tobytes()
        for k in a
    )

