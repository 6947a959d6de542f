"""Shared fixtures: small projects written by NNabla's own save(), the NNC samples, and a CLI runner."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, NamedTuple

import pytest

logging.getLogger("nnabla").setLevel(logging.WARNING)

import nnabla as nn  # noqa: E402
import nnabla.functions as F  # noqa: E402
import nnabla.parametric_functions as PF  # noqa: E402
import nnabla.solvers as S  # noqa: E402
import numpy as np  # noqa: E402
from nnabla.utils.save import save as nnabla_save  # noqa: E402

from nnc_tools.cli import main  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
NNC_SAMPLES = SHARED / "nnc-samples"


@pytest.fixture
def messages(caplog):
    """What the library reports through ``logging`` (the CLI prints it on stderr), at INFO and above."""
    caplog.set_level(logging.INFO, logger="nnc_tools")
    return caplog


def nnc_samples(pattern: str) -> List[Path]:
    return sorted(NNC_SAMPLES.glob(pattern)) if NNC_SAMPLES.is_dir() else []


needs_samples = pytest.mark.skipif(not NNC_SAMPLES.is_dir(), reason=f"{NNC_SAMPLES} is absent (../shared not checked out)")


def tiny_contents(batch_size: int = 4, classes: int = 3, seed: int = 0) -> dict:
    """A two-layer CNN with NNC names, its training/validation networks, an optimizer, datasets and an executor."""
    nn.clear_parameters()
    np.random.seed(seed)
    x = nn.Variable((batch_size, 1, 8, 8))
    t = nn.Variable((batch_size, 1))

    def net(test: bool):
        h = PF.convolution(x, 4, (3, 3), pad=(1, 1), name="Convolution")
        h = PF.batch_normalization(h, batch_stat=not test, name="BatchNormalization")
        h = F.relu(h)
        h = F.max_pooling(h, (2, 2))
        return F.softmax(PF.affine(h, classes, name="Affine"))

    loss = F.categorical_cross_entropy(net(False), t)  # per example, as NNC's CategoricalCrossEntropy layer
    loss_v = F.categorical_cross_entropy(net(True), t)
    y = net(True)
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
