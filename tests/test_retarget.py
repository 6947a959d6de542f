"""`nnc-tl retarget`: trained projects (the zoo's after `nnc-tl train`, plain NNabla ones not in the zoo, NNC samples)
pointed at a dataset with another number of classes; the head found, resized and re-initialised in every network,
everything else copied bit for bit; what it writes trains under nnc-tl and nnabla_cli; every bad input one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nnabla.functions as F
import nnabla.parametric_functions as PF
import numpy as np
import pytest

from nnc_tools.formats.nnp import load_project, multipliers
from nnc_tools.formats.schema import executor_classes
from nnc_tools.training.train import TrainOptions, train

from .conftest import NNC_SAMPLES, assert_refused, needs_samples, params_of, tiny_project, write_image_csv


def mlp(x, classes, test):
    h = F.relu(PF.affine(x, 16, name="Affine"))
    return F.softmax(PF.affine(h, classes, name="Affine_2"))


def gap_resnet(x, classes, test):
    """A residual block, global average pooling, then the classifier (a ResNet's tail)."""
    h = F.relu(PF.batch_normalization(PF.convolution(x, 4, (3, 3), pad=(1, 1), name="Convolution"), batch_stat=not test,
                                      name="BatchNormalization"))
    r = PF.batch_normalization(PF.convolution(h, 4, (3, 3), pad=(1, 1), name="Convolution_2"), batch_stat=not test,
                               name="BatchNormalization_2")
    h = F.relu(F.add2(h, r))
    h = F.global_average_pooling(h)
    return F.softmax(PF.affine(h, classes, name="Affine"))


def two_affine(x, classes, test):
    h = F.relu(PF.convolution(x, 4, (3, 3), pad=(1, 1), name="Convolution"))
    h = F.relu(PF.affine(h, 12, name="Affine"))
    if not test:
        h = F.dropout(h, 0.5)
    return F.softmax(PF.affine(h, classes, name="Affine_2"))


def conv_head(x, classes, test):
    """NiN-style: the classes are a convolution's maps, averaged over the image."""
    h = F.relu(PF.convolution(x, 4, (3, 3), pad=(1, 1), name="Convolution"))
    h = PF.convolution(h, classes, (1, 1), name="Convolution_2")
    h = F.reshape(F.average_pooling(h, (8, 8)), (x.shape[0], classes))
    return F.softmax(h)


def trained(tmp_path: Path, net, classes: int = 3) -> Path:
    source = tiny_project(tmp_path / "source", net=net, classes=classes, epochs=1)
    train(source, tmp_path / "source" / "r", TrainOptions(progress=False, workers=1))
    return tmp_path / "source" / "r" / "results.nnp"


def new_data(tmp_path: Path, classes: int):
    folder = tmp_path / "new"
    return (write_image_csv(folder, 20, classes=classes, seed=3, name="training"),
            write_image_csv(folder, 10, classes=classes, seed=4, name="validation"))


def head_shapes(project: Path, names):
    proto = load_project(project).proto
    return {(n.name, v.name): list(v.shape.dim) for n in proto.network for v in n.variable if v.name in names}


@pytest.mark.parametrize("net, head, head_params", [
    (mlp, "Affine_2", ["Affine_2/affine/W", "Affine_2/affine/b"]),
    (gap_resnet, "Affine", ["Affine/affine/W", "Affine/affine/b"]),
    (two_affine, "Affine_2", ["Affine_2/affine/W", "Affine_2/affine/b"]),
    (conv_head, "Convolution_2", ["Convolution_2/conv/W", "Convolution_2/conv/b"]),
])
def test_plain_nnabla_projects_are_retargeted_in_every_network(cli, tmp_path, net, head, head_params):
    source = trained(tmp_path, net)
    train_csv, val_csv = new_data(tmp_path, 5)
    target = tmp_path / "t.nnp"
    result = cli("retarget", source, "-o", target, "--train-csv", train_csv, "--val-csv", val_csv)
    assert result.code == 0, result.err
    assert f"head {head} (" in result.out and "3 -> 5 classes" in result.out and "Main, MainValidation, MainRuntime" in result.out
    before, after = params_of(source), params_of(target)
    for name, p in before.items():
        if name in head_params:
            assert 5 in after[name].data.shape and 3 not in after[name].data.shape[:1 + (net is not conv_head)], name
        else:
            assert after[name].data.tobytes() == p.data.tobytes(), name  # bit for bit
    assert np.abs(after[head_params[0]].data).sum() > 0  # the weight drawn anew, not zeros
    assert executor_classes(load_project(target).proto) == 5
    shapes = head_shapes(target, head_params)
    assert {k[0] for k in shapes} == {"Main", "MainValidation", "MainRuntime"}
    assert all(5 in dims for dims in shapes.values())
    proto = load_project(target).proto
    assert {d.name: d.uri for d in proto.dataset} == {"Training": "new/training.csv", "Validation": "new/validation.csv"}
    assert proto.training_config.iter_per_epoch == 20 // 4
    run = train(target, tmp_path / "r", TrainOptions(progress=False, epochs=1, workers=1))
    assert run.summary.accuracy is not None


def test_the_kept_head_trains_exactly_as_the_source_with_its_weights(tmp_path):
    """Same class count: the head is kept, so training the retargeted project on the source's own data is training the
    unretargeted project with --weights on that data: the same first-epoch cost, to the bit."""
    from nnc_tools.project.retarget import RetargetOptions, retarget

    source = trained(tmp_path, two_affine)
    folder = tmp_path / "source"
    target = folder / "t.nnp"
    result = retarget(source, target, RetargetOptions(folder / "training.csv", folder / "validation.csv"))
    assert result.reinitialised == [] and result.networks == []
    a = train(target, tmp_path / "a", TrainOptions(progress=False, epochs=1, workers=1, seed=7))
    b = train(folder / "p.nnp", tmp_path / "b", TrainOptions(progress=False, epochs=1, workers=1, seed=7, weights=source))
    assert a.history[0].cost == b.history[0].cost
    assert a.history[0].valid_error == b.history[0].valid_error


def test_overlay_seed_and_training_settings(cli, tmp_path):
    source = trained(tmp_path, two_affine)
    train_csv, val_csv = new_data(tmp_path, 4)
    overlay = tmp_path / "o.yaml"
    overlay.write_text("rules:\n  - up_to: Affine\n    multiplier: 0\n")
    args = ["--train-csv", train_csv, "--val-csv", val_csv, "-c", overlay, "--epochs", "7", "--batch-size", "2",
            "--solver", "Adam", "--lr", "0.005"]
    one = cli("retarget", source, "-o", tmp_path / "a.nnp", *args, "--seed", "1")
    two = cli("retarget", source, "-o", tmp_path / "b.nnp", *args, "--seed", "2")
    assert one.code == 0 and two.code == 0, one.err + two.err
    assert "Affine/affine/W" in one.out and "1 -> 0" in one.out
    a, b = params_of(tmp_path / "a.nnp"), params_of(tmp_path / "b.nnp")
    assert a["Affine_2/affine/W"].data.tobytes() != b["Affine_2/affine/W"].data.tobytes()  # the seed draws the head
    assert a["Affine/affine/W"].data.tobytes() == b["Affine/affine/W"].data.tobytes()
    proto = load_project(tmp_path / "a.nnp").proto
    m = multipliers(proto.optimizer[0])
    assert m["Convolution/conv/W"] == 0 and m["Affine/affine/W"] == 0 and m["Affine_2/affine/W"] == 1
    assert proto.optimizer[0].solver.type == "Adam" and proto.optimizer[0].solver.adam_param.alpha == pytest.approx(0.005)
    assert (proto.training_config.max_epoch, proto.training_config.iter_per_epoch) == (7, 10)
    assert all(d.batch_size == 2 for d in proto.dataset) and all(n.batch_size == 2 for n in proto.network)
    run = train(tmp_path / "a.nnp", tmp_path / "r", TrainOptions(progress=False, epochs=1, workers=1))
    assert run.summary.batch_size == 2


def test_a_zoo_network_trained_by_nnc_tl_and_nnabla_cli_trains_the_retargeted_project(cli, tmp_path):
    """resnet20 exported, trained, retargeted 10 -> 3 classes; the result trains under `nnabla_cli train -c T -p T` (the
    form that starts from the project's weights: without -p nnabla_cli starts from random ones)."""
    data = tmp_path / "data"
    src_csv = write_image_csv(data, 20, classes=10, channels=3, size=16, name="src")
    assert cli("export", "resnet20", "-o", tmp_path / "s.nnp", "--train-csv", src_csv, "--val-csv", src_csv,
               "--input", "3,16,16", "--batch-size", "10").code == 0
    assert cli("train", tmp_path / "s.nnp", "-o", tmp_path / "sr", "--epochs", "1", "--workers", "1").code == 0
    train_csv = write_image_csv(data, 12, classes=3, channels=3, size=16, name="training")
    overlay = tmp_path / "o.yaml"
    overlay.write_text("rules:\n  - up_to: Convolution_19\n    multiplier: 0\n")
    target = tmp_path / "t.nnp"
    result = cli("retarget", tmp_path / "sr" / "results.nnp", "-o", target, "--train-csv", train_csv, "--val-csv", train_csv,
                 "-c", overlay, "--epochs", "1", "--batch-size", "4")
    assert result.code == 0, result.err
    assert executor_classes(load_project(target).proto) == 3
    exe = Path(sys.executable).with_name("nnabla_cli")
    for with_p in (True, False):
        out = tmp_path / f"cli-{with_p}"
        out.mkdir()
        command = [str(exe), "train", "-c", str(target), "-o", str(out)] + (["-p", str(target)] if with_p else [])
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        frozen = params_of(out / "results.nnp")["Convolution_19/conv/W"].data
        same = frozen.tobytes() == params_of(target)["Convolution_19/conv/W"].data.tobytes()
        assert same == with_p  # frozen layers keep the source's weights only when -p passes them


@needs_samples
def test_an_nnc_sample_through_its_converted_prototxt(cli, tmp_path):
    """NNC's LeNet (MNIST, 10 classes) as NNC's converter writes it, with parameters NNabla initialised from it, to 3
    classes of 28x28 grey images."""
    import nnabla as nn
    from nnabla.utils.load import load as nnabla_load

    prototxt = NNC_SAMPLES / "LeNet.prototxt"
    if not prototxt.is_file():
        pytest.skip(f"{prototxt} is absent")
    nn.clear_parameters()
    nnabla_load([str(prototxt)], prepare_data_iterator=False)
    weights = tmp_path / "w.h5"
    nn.save_parameters(str(weights))
    train_csv = write_image_csv(tmp_path, 9, classes=3, size=28, name="training")
    target = tmp_path / "lenet3.nnp"
    result = cli("retarget", prototxt, "--weights", weights, "-o", target, "--train-csv", train_csv, "--val-csv", train_csv)
    assert result.code == 0, result.err
    assert "10 -> 3 classes" in result.out
    proto = load_project(target).proto
    assert executor_classes(proto) == 3 and {d.uri for d in proto.dataset} == {"training.csv"}


def _no_loss(x, classes, test):
    return PF.affine(x, classes, name="Affine")


@pytest.mark.parametrize("case, message", [
    ("no loss", "no classifier loss"),
    ("two heads", "2 heads reach a loss"),
    ("no labels", "has no label column y"),
    ("one class", "has 1 class"),
    ("image shape", "is 1x6x6 (channels x height x width); results.nnp's input is 1x8x8"),
    ("head not parameterised", "--head ReLU: a ReLU, which has no parameters to resize"),
    ("head unknown", "--head Afine_9: no such layer (closest: Affine"),
    ("sdcproj target", "an .sdcproj is written from an .sdcproj"),
    ("no parameters", "holds no trained parameters"),
])
def test_bad_inputs_are_one_line_and_write_nothing(cli, tmp_path, case, message):
    source = trained(tmp_path, two_affine)
    train_csv, val_csv = new_data(tmp_path, 4)
    target = tmp_path / "t.nnp"
    extra = []
    if case == "no loss":
        from nnabla.utils.save import save as nnabla_save

        from .conftest import tiny_contents

        contents = tiny_contents()
        x = contents["networks"][0]["names"]["x"]
        y = _no_loss(x, 3, False)
        contents["networks"] = [{"name": "Main", "batch_size": 4, "outputs": {"y": F.squared_error(y, y)}, "names": {"x": x}}]
        contents["executors"] = []
        contents["monitors"] = []
        source = tmp_path / "noloss.nnp"
        nnabla_save(str(source), contents)
    elif case == "two heads":
        from nnabla.utils.save import save as nnabla_save

        from .conftest import tiny_contents

        contents = tiny_contents()
        x, t = contents["networks"][0]["names"]["x"], contents["networks"][0]["names"]["y"]
        other = F.categorical_cross_entropy(F.softmax(PF.affine(x, 3, name="Affine_9")), t)
        contents["networks"].append({"name": "Other", "batch_size": 4, "outputs": {"loss": other}, "names": {"x": x, "y": t}})
        source = tmp_path / "two.nnp"
        nnabla_save(str(source), contents)
    elif case == "no labels":
        train_csv = tmp_path / "x.csv"
        train_csv.write_text("x:image\nnew/training/0.png\n")
    elif case == "one class":
        train_csv = write_image_csv(tmp_path / "one", 3, classes=1, name="training")
    elif case == "image shape":
        train_csv = write_image_csv(tmp_path / "small", 6, classes=4, size=6, name="training")
    elif case == "head not parameterised":
        extra = ["--head", "ReLU"]
    elif case == "head unknown":
        extra = ["--head", "Afine_9"]
    elif case == "sdcproj target":
        target = tmp_path / "t.sdcproj"
    elif case == "no parameters":
        assert cli("convert", source, tmp_path / "bare.nntxt", "--param-format", "inline").code == 0
        (tmp_path / "bare.nntxt").write_text(_without_parameters((tmp_path / "bare.nntxt").read_text()))
        source = tmp_path / "bare.nntxt"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = cli("retarget", source, "-o", target, "--train-csv", train_csv, "--val-csv", val_csv, *extra)
    assert result.code == 2 and message in result.err, (case, result.err)
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing changed


def _without_parameters(text: str) -> str:
    """A project text with its inline ``parameter { ... }`` blocks taken out."""
    out, depth = [], 0
    for line in text.splitlines():
        if depth == 0 and line.startswith("parameter {"):
            depth = 1
            continue
        if depth:
            depth += line.count("{") - line.count("}")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


RETARGETED = {"12_residual_learning", "LeNet", "LeNet_fashion", "alexnet", "densenet-161", "digits", "hand-sign", "iris", "nin",
              "resnet-101", "resnet-110-cutout", "resnet-110-mixup", "resnet-110_cifar10", "resnet-110_cifar100", "resnet-152",
              "resnet-18", "resnet-34", "resnet-50", "resnext-101", "semi_supervised_learning_VAT", "senet-154",
              "shufflenet-0.5x", "shufflenet-2.0x", "shufflenet", "squeezenet11", "vgg-11", "vgg-13", "vgg-16",
              "wav_keyboard_sound"}
_SIGMOID_HEADS = ("01_logistic_regression", "01_visualize_weight_of_feature", "02_binary_cnn", "02_l1_regularization",
                  "05_MCdropout", "10_deep_mlp", "bidirectional_elman_net", "binary_semantic_segmentation", "elman_net",
                  "elman_net_with_attention", "gated_recurrent_unitGRU", "long_short_term_memoryLSTM", "mnist_dcgan",
                  "mnist_dcgan_with_label", "stacked_GRU")
REFUSED = {**{name: "BinaryCrossEntropy" for name in _SIGMOID_HEADS},
           **{name: "no classifier loss" for name in ("06_auto_encoder", "11_deconvolution", "LSTM_auto_encoder",
                                                      "sin_wave_anomaly_detection")},
           **{name: "is a BatchNormalization" for name in ("binary_connect_mnist_LeNet", "binary_connect_mnist_MLP",
                                                          "binary_net_mnist_LeNet", "binary_net_mnist_MLP")},
           "binary_weight_mnist_MLP": "is a BinaryWeightAffine", "GoogLeNet": "3 heads reach a loss",
           "04_inference_result_at_each_layer": "4 heads reach a loss", "mnist_vae": "3-axis output",
           "03_attention": "3-axis output", "resnet-110-deepmil": "SigmoidCrossEntropy",
           "unetlike_125px_person": "SigmoidCrossEntropy", "unetlike_125px": "joins the head's output with another",
           "synthetic_image_object_detection": "turns the head's 45 outputs"}
# The executor's outputs where it has more than the classifier's (VAT's also gives its reconstruction and a score)
EXECUTOR_OUTPUTS = {"semi_supervised_learning_VAT": [(2, 1), (2, 1, 28, 28), (2, 3)]}


@needs_samples
def test_every_nnc_sample_is_retargeted_or_refused_in_one_line(tmp_path):
    """Each NNC sample's converted prototxt, with NNabla-initialised parameters, to 3 classes: a Softmax classifier gets
    a project NNabla loads with 3 outputs in its executor; the others (three heads, Sigmoid heads, a detector) a reason."""
    import nnabla as nn
    from nnabla.utils.load import load as nnabla_load

    from nnc_tools.errors import NncToolsError
    from nnc_tools.project.retarget import RetargetOptions, retarget

    csv = tmp_path / "t.csv"
    csv.write_text("x:image,y:label;a;b;c\nx.npy,0\nx.npy,2\n")  # no image to check against the input
    seen = set()
    for prototxt in sorted(NNC_SAMPLES.glob("*.prototxt")):
        name = prototxt.stem
        nn.clear_parameters()
        nnabla_load([str(prototxt)], prepare_data_iterator=False)
        weights = tmp_path / f"{name}.h5"
        nn.save_parameters(str(weights))
        target = tmp_path / f"{name}.nnp"
        if name in REFUSED:
            with pytest.raises(NncToolsError, match=REFUSED[name]):
                retarget(prototxt, target, RetargetOptions(csv, csv, weights=weights))
            assert not target.exists()
        else:
            retarget(prototxt, target, RetargetOptions(csv, csv, weights=weights))
            nn.clear_parameters()
            info = nnabla_load([str(target)], prepare_data_iterator=False, batch_size=2)
            assert [tuple(v.variable_instance.shape) for e in info.executors.values() for v in e.output_assign] == \
                EXECUTOR_OUTPUTS.get(name, [(2, 3)])
            seen.add(name)
    assert seen == RETARGETED & {p.stem for p in NNC_SAMPLES.glob("*.prototxt")}
    assert not (RETARGETED & set(REFUSED))


def _changed(before: str, after: str):
    """(old, new) of the lines that differ (same line count: an edit in place)."""
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b) if x != y]


@needs_samples
def test_an_nnc_sdcproj_is_retargeted_in_its_own_format(cli, tmp_path):
    """NNC's LeNet.sdcproj to 3 classes: only the head's OutShape, the datasets' URIs, MaxEpoch and the overlay's
    multipliers change, line for line (NNC's converter reads the result with a 150x3 head; checked by hand)."""
    source = NNC_SAMPLES / "LeNet.sdcproj"
    csv = write_image_csv(tmp_path, 6, classes=3, size=28, name="training")
    overlay = tmp_path / "o.yaml"
    overlay.write_text("rules:\n  - up_to: Convolution_2\n    multiplier: 0\n")
    target = tmp_path / "lenet3.sdcproj"
    result = cli("retarget", source, "-o", target, "--train-csv", csv, "--val-csv", csv, "-c", overlay, "--epochs", "3")
    assert result.code == 0, result.err
    assert "Main:Affine_2 OutShape  10 -> 3" in result.out
    changed = _changed(source.read_text(encoding="utf-8", errors="surrogateescape"),
                       target.read_text(encoding="utf-8", errors="surrogateescape"))
    assert ("Property_1_Value=10", "Property_1_Value=3") in changed
    assert ("MaxEpoch=10", "MaxEpoch=3") in changed
    assert sum(1 for _, new in changed if new == f"URI={csv.resolve()}") == 2
    assert sum(1 for old, new in changed if (old, new) == ("Property_12_Value=1.0", "Property_12_Value=0.0")) == 2
    assert len(changed) == 1 + 1 + 2 + 4  # OutShape, MaxEpoch, two URIs, four multipliers (W and b of two layers)


@needs_samples
def test_a_head_inside_a_unit_and_its_weight_references(cli, tmp_path):
    """vgg-11: the loss reaches Affine_3 through the Unit VGG11 (network VGG11Train; VGG11 for the runtime): both get
    the new OutShape; a weight reference NNC's "Open with Weight" left on the head (its own W.File, the Unit's
    Affine_3.W.File override) is emptied, one on another layer is kept."""
    from nnc_tools.formats.sdcproj import load_sdcproj

    source = tmp_path / "vgg.sdcproj"
    sdc = load_sdcproj(NNC_SAMPLES / "vgg-11.sdcproj")
    unit = next(layer for layer in sdc.file_layers("Training") if layer.type == "Unit")
    sdc.set_property(unit, "Affine_3.W.File", "20240101_000000/Affine_3~affine~W")
    conv = next(layer for layer in sdc.file_layers("VGG11Train") if layer.name == "Convolution")
    sdc.set_property(conv, "W.File", "20240101_000000/Convolution~conv~W")
    source.write_bytes(sdc.to_bytes())
    csv = tmp_path / "t.csv"
    csv.write_text("x:image,y:label;a;b;c\nx.npy,0\n")
    target = tmp_path / "vgg3.sdcproj"
    result = cli("retarget", source, "-o", target, "--train-csv", csv, "--val-csv", csv)
    assert result.code == 0, result.err
    assert "through Unit VGG11" in result.out and "1000 -> 3 classes" in result.out
    out = load_sdcproj(target)
    heads = {net: layer.properties["OutShape"] for net in out.network_names() for layer in out.file_layers(net)
             if layer.name == "Affine_3"}
    assert heads == {"VGG11Train": "3", "VGG11": "3"}
    unit = next(layer for layer in out.file_layers("Training") if layer.type == "Unit")
    assert unit.properties["Affine_3.W.File"] == ""
    conv = next(layer for layer in out.file_layers("VGG11Train") if layer.name == "Convolution")
    assert conv.properties["W.File"] == "20240101_000000/Convolution~conv~W"


@needs_samples
@pytest.mark.parametrize("case, message", [
    ("in place", "is the source project"),
    ("image shape", "is 1x8x8 (channels x height x width); LeNet.sdcproj's input is 1x28x28"),
])
def test_sdcproj_retarget_refusals(cli, tmp_path, case, message):
    import shutil

    source = tmp_path / "LeNet.sdcproj"
    shutil.copy(NNC_SAMPLES / "LeNet.sdcproj", source)
    csv = tmp_path / "t.csv"
    csv.write_text("x:image,y:label;a;b;c\nx.npy,0\n")
    if case == "image shape":
        csv = write_image_csv(tmp_path, 3, classes=3, size=8, name="small")
    target = source if case == "in place" else tmp_path / "t.sdcproj"
    extra = []
    before = source.read_bytes()
    result = cli("retarget", source, "-o", target, "--train-csv", csv, "--val-csv", csv, *extra)
    assert_refused(result, message)
    assert source.read_bytes() == before and (target == source or not target.exists())


@needs_samples
def test_an_sdcproj_retargeted_with_weights(cli, tmp_path):
    """.sdcproj with --weights FROM.nnp: Open in EDIT Tab with Weight, then the head resized: every parameter but the
    head's takes its weights from FROM.nnp's job, the head's references are empty (it starts from its initializer)."""
    import contextlib
    import io

    import nnabla as nn
    from nnabla.utils.load import load as nnabla_load

    from nnc_tools.formats.nnp import save_project

    nn.clear_parameters()
    with contextlib.redirect_stdout(io.StringIO()):
        nnabla_load([str(NNC_SAMPLES / "LeNet.prototxt")], prepare_data_iterator=False)
    nn.save_parameters(str(tmp_path / "w.h5"))
    weights = tmp_path / "from.nnp"
    save_project(load_project(NNC_SAMPLES / "LeNet.prototxt", [tmp_path / "w.h5"]), weights)
    csv = write_image_csv(tmp_path, 6, classes=3, size=28, name="training")
    out = tmp_path / "lenet3.sdcproj"
    result = cli("retarget", NNC_SAMPLES / "LeNet.sdcproj", "--weights", weights, "-o", out, "--train-csv", csv,
                 "--val-csv", csv)
    assert result.code == 0, result.err
    assert "6 parameters take their weights from job" in result.out and "2 left to their initializer" in result.out
    from nnc_tools.formats.sdcproj import load_sdcproj

    layers = {layer.name: layer.properties for layer in load_sdcproj(out).file_layers("Main")}
    assert layers["Affine_2"]["OutShape"] == "3" and layers["Affine_2"]["W.File"] == ""
    assert layers["Convolution"]["W.File"].endswith("/Convolution~conv~W")
    job = layers["Convolution"]["W.File"].split("/")[0]
    assert (tmp_path / "lenet3.weights" / job / "results.nnp").read_bytes() == weights.read_bytes()


def test_a_frozen_layer_without_values_is_refused_and_left_ones_are_named(cli, tmp_path):
    """A project whose Convolution has no stored values, retargeted with an overlay that freezes it, would train a
    frozen random layer: refused in one line naming it, nothing written; allowed explicitly, the output names every
    parameter left to its initializer (not only how many)."""
    from nnc_tools.formats.nnp import Project, load_project, save_project

    project = load_project(tiny_project(tmp_path))
    params = project.parameters
    del params["Convolution/conv/W"]
    source = tmp_path / "partial.nnp"
    save_project(Project(project.proto, params), source)
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Convolution]\n")
    args = ("retarget", source, "-o", tmp_path / "t.nnp", "--train-csv", tmp_path / "training.csv",
            "--val-csv", tmp_path / "validation.csv", "-c", overlay)
    assert_refused(cli(*args), "partial.nnp", "parameters the project freezes", "Convolution/conv/W", "--allow-frozen-initial")
    assert not (tmp_path / "t.nnp").exists()
    allowed = cli(*args, "--allow-frozen-initial")
    assert allowed.code == 0, allowed.err
    assert "1 parameters have no values and start from their initializer: Convolution/conv/W" in allowed.out


def _renamed_csv(tmp_path, names, split="training"):
    """A split's rows under a header naming other classes (as CIFAR-10's airplane… against aquatic's beaver…)."""
    rows = (tmp_path / f"{split}.csv").read_text().splitlines()
    out = tmp_path / ("renamed.csv" if split == "training" else f"renamed_{split}.csv")
    out.write_text("\n".join(["x:image,y:label;" + ";".join(names)] + rows[1:]) + "\n")
    return out


def test_same_count_other_class_names_draw_the_head_anew(cli, tmp_path):
    """The source was trained on c0, c1, c2; the new CSV names beaver, dolphin, otter: the count matches, but the head's
    weights score the old classes, so it is re-initialised and the output says why. Same names keep it."""
    source = tiny_project(tmp_path)
    renamed = _renamed_csv(tmp_path, ["beaver", "dolphin", "otter"])
    renamed_val = _renamed_csv(tmp_path, ["beaver", "dolphin", "otter"], "validation")
    result = cli("retarget", source, "-o", tmp_path / "t.nnp", "--train-csv", renamed, "--val-csv", renamed_val)
    assert result.code == 0, result.err
    assert "the source was trained on c0, c1, c2" in result.out and "beaver, dolphin, otter" in result.out
    assert "re-initialised Affine/affine/W, Affine/affine/b" in result.out
    before, after = params_of(source), params_of(tmp_path / "t.nnp")
    assert before["Affine/affine/W"].data.tobytes() != after["Affine/affine/W"].data.tobytes()
    kept = cli("retarget", source, "-o", tmp_path / "k.nnp", "--train-csv", tmp_path / "training.csv",
               "--val-csv", tmp_path / "validation.csv")
    assert "the head is kept" in kept.out
    assert params_of(tmp_path / "k.nnp")["Affine/affine/W"].data.tobytes() == before["Affine/affine/W"].data.tobytes()


def test_evaluate_refuses_a_csv_naming_other_classes(cli, tmp_path):
    """A trained project scored on a CSV whose header names other classes (or the same in another order): one line,
    not a table labelled with the wrong names; the project's own classes evaluate."""
    source = tiny_project(tmp_path)
    assert cli("train", source, "-o", tmp_path / "r", "--epochs", "1", "--workers", "1").code == 0
    for names in (["beaver", "dolphin", "otter"], ["c1", "c0", "c2"]):
        renamed = _renamed_csv(tmp_path, names)
        assert_refused(cli("evaluate", tmp_path / "r" / "results.nnp", "--dataset", renamed), "renamed.csv",
                       f"its header names the classes {', '.join(names)}", "was trained on c0, c1, c2")
    assert cli("evaluate", tmp_path / "r" / "results.nnp", "--dataset", tmp_path / "validation.csv").code == 0


def test_a_trained_result_knows_its_classes_where_it_lies(cli, tmp_path):
    """The issue's case: a results.nnp from nnc-tl train (its folder is not the project's), retargeted to a CSV naming
    other classes at the same count: the head is drawn anew (its datasets resolve from the result folder)."""
    source = tiny_project(tmp_path)
    assert cli("train", source, "-o", tmp_path / "r", "--epochs", "1", "--workers", "1").code == 0
    renamed = _renamed_csv(tmp_path, ["beaver", "dolphin", "otter"])
    renamed_val = _renamed_csv(tmp_path, ["beaver", "dolphin", "otter"], "validation")
    result = cli("retarget", tmp_path / "r" / "results.nnp", "-o", tmp_path / "t.nnp", "--train-csv", renamed,
                 "--val-csv", renamed_val)
    assert result.code == 0, result.err
    assert "the source was trained on c0, c1, c2" in result.out and "re-initialised Affine/affine/W" in result.out
