"""Issue 28: NNC's classification samples, compiled by nnc-tl, train for one epoch on generated data of their input
shapes, under ``nnc-tl train`` and under NNabla's own ``nnabla_cli train`` (CPU). The samples name NNC's own dataset
files; the test points the compiled project's datasets at the data it writes, as a user points them at theirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from nnabla.utils import nnabla_pb2

from .conftest import needs_samples, nnc_samples

# The samples whose loss compares a class (or a yes/no) with a label: MNIST-sized, CIFAR-sized, iris and sound ones.
SMALL = ["01_logistic_regression", "01_visualize_weight_of_feature", "02_binary_cnn", "02_l1_regularization",
         "03_attention", "04_inference_result_at_each_layer", "05_MCdropout", "10_deep_mlp", "12_residual_learning",
         "LeNet", "LeNet_fashion", "bidirectional_elman_net", "binary_connect_mnist_LeNet", "binary_connect_mnist_MLP",
         "binary_net_mnist_LeNet", "binary_net_mnist_MLP", "binary_weight_mnist_MLP", "digits", "elman_net",
         "elman_net_with_attention", "gated_recurrent_unitGRU", "hand-sign", "iris", "long_short_term_memoryLSTM",
         "resnet-110-cutout", "resnet-110-deepmil", "resnet-110_cifar10", "resnet-110_cifar100", "stacked_GRU",
         "wav_keyboard_sound"]
# NNC's ImageNet projects (480x480 inputs): minutes on two CPU cores, so only with NNC_TL_BIG_MODELS=1.
IMAGENET = ["GoogLeNet", "alexnet", "densenet-161", "nin", "resnet-18", "resnet-34", "resnet-50", "resnet-101",
            "resnet-152", "resnext-101", "senet-154", "shufflenet", "shufflenet-0.5x", "shufflenet-2.0x",
            "squeezenet11", "vgg-11", "vgg-13", "vgg-16"]
_BIG = pytest.mark.skipif(not os.environ.get("NNC_TL_BIG_MODELS"), reason="ImageNet-sized: NNC_TL_BIG_MODELS=1")
_CLASS_LOSSES = ("CategoricalCrossEntropy", "SoftmaxCrossEntropy")
_YES_NO_LOSSES = ("BinaryCrossEntropy", "SigmoidCrossEntropy")


def _classes(network, target: str) -> int:
    """How many values the label ``target`` takes: the classes of the loss comparing it (2 for a yes/no loss)."""
    shapes = {v.name: list(v.shape.dim) for v in network.variable}
    for f in network.function:
        if target in f.input and f.type in _CLASS_LOSSES:
            return shapes[f.input[0]][-1]
    return 2


def _write_data(proto, folder: Path, n: int) -> Path:
    """A dataset CSV for the main optimizer's data variables: images for image-shaped ones, ``.npy`` arrays for the
    others, labels for the losses' targets."""
    from PIL import Image

    opt = proto.optimizer[0]
    network = next(n for n in proto.network if n.name == opt.network_name)
    shapes = {v.name: [int(d) for d in v.shape.dim][1:] for v in network.variable}
    columns = {}  # data name -> (variable, shape); one column per data name (GoogLeNet's three losses share y)
    for d in opt.data_variable:
        columns.setdefault(d.data_name, (d.variable_name, shapes[d.variable_name]))
    rng = np.random.RandomState(0)
    rows = [",".join(columns)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        row = []
        for name, (variable, shape) in columns.items():
            if shape == [1] and (name == "y" or any(variable in f.input[1:] for f in network.function)):  # a label
                row.append(str(i % min(3, _classes(network, variable))))
            elif len(shape) == 3 and shape[0] in (1, 3):
                pixels = rng.randint(0, 256, size=shape[1:] + ([3] if shape[0] == 3 else [])).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}{i}.png")
                row.append(f"{name}{i}.png")
            else:
                np.save(folder / f"{name}{i}.npy", rng.uniform(0, 1, size=shape).astype(np.float32))
                row.append(f"{name}{i}.npy")
        rows.append(",".join(row))
    csv = folder / "data.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def _train_one_epoch(cli, tmp_path, name: str) -> None:
    sample = next(p for p in nnc_samples(f"{name}.sdcproj"))
    compiled = tmp_path / f"{name}.nntxt"
    result = cli("convert", sample, compiled)
    assert result.code == 0, result.err
    proto = nnabla_pb2.NNablaProtoBuf()
    text_format.Merge(compiled.read_text(encoding="utf-8"), proto)
    batch = 2
    csv = _write_data(proto, tmp_path / "data", 2 * batch)
    shapes = {n.name: {v.name: list(v.shape.dim) for v in n.variable} for n in proto.network}
    wanted = [shapes[o.network_name][d.variable_name] for o in proto.optimizer for d in o.data_variable][:1]
    for m in list(proto.monitor):  # (ImageNet projects also validate at 320x320 and 480x480: other data)
        if [shapes[m.network_name].get(d.variable_name) for d in m.data_variable][:1] != wanted:
            proto.monitor.remove(m)
    if not proto.dataset:  # NNC's ImageNet projects' datasets have no URI: the converter leaves them out (and names
        proto.dataset.add(name="Training", shuffle=True)  # none in the optimizer and monitors)
        for m in list(proto.optimizer) + list(proto.monitor):
            m.dataset_name[:] = ["Training"]
    for k, dataset in enumerate(proto.dataset):  # the user's data in place of NNC's sample files
        dataset.uri, dataset.cache_dir, dataset.batch_size = str(csv), str(tmp_path / f"cache{k}"), batch
    for network in proto.network:
        network.batch_size = batch
    proto.training_config.max_epoch, proto.training_config.iter_per_epoch = 1, 2
    for o in proto.optimizer:  # (senet-154's cosine schedule spans max_iter: 0 where NNC had no dataset size)
        if o.solver.lr_scheduler_type == "Cosine":
            o.solver.cosine_scheduler_param.max_iter = 2
    compiled.write_text(text_format.MessageToString(proto), encoding="utf-8")

    result = cli("train", compiled, "-o", tmp_path / "nnc-tl", "-q")
    assert result.code == 0, result.err
    assert (tmp_path / "nnc-tl" / "results.nnp").is_file()
    (tmp_path / "nnabla_cli").mkdir()
    ran = subprocess.run([str(Path(sys.executable).with_name("nnabla_cli")), "train", "-c", str(compiled), "-o",
                          str(tmp_path / "nnabla_cli")], capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert ran.returncode == 0 and "Training Completed" in ran.stdout + ran.stderr, (ran.stdout + ran.stderr)[-3000:]


@needs_samples
@pytest.mark.slow
@pytest.mark.parametrize("name", SMALL)
def test_a_classification_sample_trains_one_epoch_under_nnc_tl_and_nnabla_cli(cli, tmp_path, name):
    _train_one_epoch(cli, tmp_path, name)


@needs_samples
@pytest.mark.slow
@_BIG
@pytest.mark.parametrize("name", IMAGENET)
def test_an_imagenet_sample_trains_one_epoch_under_nnc_tl_and_nnabla_cli(cli, tmp_path, name):
    _train_one_epoch(cli, tmp_path, name)


def test_a_yes_no_classifier_is_scored_as_two_classes():
    """A network with one output per row (NNC's binary samples) scores class 1 where its probability passes 0.5, or
    where the logit a SigmoidCrossEntropy reads passes 0 (it was refused: 'label 1 is past the 1 classes')."""
    from nnc_tools.training.evaluate import yes_or_no

    proto = nnabla_pb2.NNablaProtoBuf()
    proto.executor.add(name="Executor").output_variable.add(variable_name="Sigmoid", data_name="y'")
    proto.network.add(name="Main").function.add(name="Loss", type="BinaryCrossEntropy", input=["Sigmoid", "T"])
    scores = np.array([[0.2], [0.7]], dtype=np.float32)
    assert yes_or_no(proto, scores).argmax(axis=1).tolist() == [0, 1]
    proto.network[0].function[0].type = "SigmoidCrossEntropy"  # its input a logit: 0.2 and 0.7 both say yes
    assert yes_or_no(proto, scores).argmax(axis=1).tolist() == [1, 1]
    many = np.array([[0.1, 0.9, 0.0]])
    assert yes_or_no(proto, many) is many
