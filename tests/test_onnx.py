"""`nnc-tl export-onnx` and the `results.onnx` train writes: NNabla's own exporter on the executor network; the ONNX
model run by onnxruntime gives NNabla's runtime outputs (1e-4) on a batch of images."""

from __future__ import annotations

import numpy as np
import pytest

from nnc_tools.data.decoded import load_dataset
from nnc_tools.project.export import export_network
from nnc_tools.project.onnx_export import onnx_available
from nnc_tools.training.evaluate import predict
from nnc_tools.training.train import TrainOptions, train

from .conftest import NNC_SAMPLES, needs_samples, tiny_project, write_image_csv

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the [dev] extra")
pytestmark = pytest.mark.skipif(not onnx_available(), reason="NNabla's ONNX exporter (nnabla-converter) is not installed")


def onnx_scores(model, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model))
    return session.run(None, {session.get_inputs()[0].name: batch.astype(np.float32)})[0]


def images(csv, project, n: int):
    """The first n rows as the executor sees them (divided by 255, NNC's Image Normalization)."""
    dataset = load_dataset(csv, csv.parent / "cache", name="x")
    return dataset, dataset.batch(np.arange(n))["x"]


def test_the_onnx_model_gives_nnablas_runtime_outputs(cli, tmp_path):
    project = tiny_project(tmp_path)
    train(project, tmp_path / "r", TrainOptions(progress=False, epochs=1, workers=1))
    result = tmp_path / "r" / "results.nnp"
    assert (tmp_path / "r" / "results.onnx").is_file()  # train writes it beside results.nnp when the extra is installed
    model = tmp_path / "m.onnx"
    done = cli("export-onnx", result, "-o", model, "--batch-size", "4")
    assert done.code == 0 and f"wrote {model}" in done.out, done.err
    dataset, batch = images(tmp_path / "validation.csv", result, 4)
    expected = predict(result, dataset, batch_size=4)[:4]
    np.testing.assert_allclose(onnx_scores(model, batch), expected, atol=1e-4)


@pytest.mark.parametrize("network", ["mini_vggnet_mark2", "mini_vggnet", "resnet20"])
def test_every_zoo_network_exports(cli, tmp_path, network):
    csv = write_image_csv(tmp_path, 8, classes=4, channels=3, size=32, name="data")
    project = tmp_path / f"{network}.nnp"
    export_network(network, project, train_csv=csv, val_csv=csv, batch_size=4)
    model = tmp_path / f"{network}.onnx"
    assert cli("export-onnx", project, "-o", model).code == 0
    dataset, batch = images(csv, project, 4)
    np.testing.assert_allclose(onnx_scores(model, batch), predict(project, dataset, batch_size=4)[:4], atol=1e-4)


ONNX_SAMPLES = {"LeNet", "12_residual_learning", "wav_keyboard_sound"}


@needs_samples
@pytest.mark.parametrize("name", sorted(ONNX_SAMPLES))
def test_nnc_sample_networks_export(cli, tmp_path, name):
    """NNC samples' converted prototxt with NNabla-initialised parameters: the ONNX model equals NNabla's executor on
    random input."""
    import nnabla as nn
    from nnabla.utils.load import load as nnabla_load

    from nnc_tools.formats.nnp import load_project, save_project

    prototxt = NNC_SAMPLES / f"{name}.prototxt"
    if not prototxt.is_file():
        pytest.skip(f"{prototxt} is absent")
    nn.clear_parameters()
    nnabla_load([str(prototxt)], prepare_data_iterator=False)
    nn.save_parameters(str(tmp_path / "w.h5"))
    project = tmp_path / f"{name}.nnp"
    save_project(load_project(prototxt, [tmp_path / "w.h5"]), project)
    model = tmp_path / f"{name}.onnx"
    done = cli("export-onnx", project, "-o", model, "--batch-size", "2")
    assert done.code == 0, done.err
    nn.clear_parameters()
    info = nnabla_load([str(project)], prepare_data_iterator=False, batch_size=2)
    executor = next(iter(info.executors.values()))
    x = next(iter(executor.dataset_assign)).variable_instance
    x.d = np.random.RandomState(0).rand(*x.shape).astype(np.float32)
    out = next(iter(executor.output_assign)).variable_instance
    out.forward(clear_buffer=True)
    np.testing.assert_allclose(onnx_scores(model, x.d), out.d, atol=1e-4)


def test_without_the_extra_it_says_what_to_install(cli, tmp_path, monkeypatch):
    import nnc_tools.project.onnx_export as onnx_export

    project = tiny_project(tmp_path)
    monkeypatch.setattr(onnx_export, "onnx_available", lambda: False)
    result = cli("export-onnx", project, "-o", tmp_path / "m.onnx")
    assert result.code == 2 and "pip install --no-deps nnabla-converter==1.39.0" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("case, message", [("not onnx", "writes an .onnx file"), ("no executor", "has no executor")])
def test_export_onnx_refusals(cli, tmp_path, case, message):
    from nnc_tools.formats.nnp import load_project, save_project

    project = tiny_project(tmp_path)
    if case == "no executor":
        loaded = load_project(project)
        del loaded.proto.executor[:]
        save_project(loaded, tmp_path / "noexec.nnp")
        project = tmp_path / "noexec.nnp"
    out = tmp_path / ("m.txt" if case == "not onnx" else "m.onnx")
    result = cli("export-onnx", project, "-o", out)
    assert result.code == 2 and message in result.err and not out.exists(), result.err


def _raw_pixel_project(folder):
    """tiny_project whose datasets and executor say no_image_normalization: true (raw 0-255 pixels, as NNC's
    resnet-110_cifar100 and every NNC ImageNet model)."""
    from nnc_tools.formats.nnp import load_project, save_project

    source = tiny_project(folder)
    loaded = load_project(source)
    for d in loaded.proto.dataset:
        d.no_image_normalization = True
    for e in loaded.proto.executor:
        e.no_image_normalization = True
    save_project(loaded, folder / "raw.nnp")
    return folder / "raw.nnp"


@pytest.mark.parametrize("raw", [False, True], ids=["divided-by-255", "raw-0-255"])
def test_onnx_states_its_input_scale_and_agrees_with_evaluate(cli, tmp_path, raw):
    """The model's metadata says how to feed it; fed so, onnxruntime gives evaluate's confusion matrix on the
    validation set, one image at a time (the batch is dynamic); export-onnx says the convention too."""
    import json

    import onnx

    project = _raw_pixel_project(tmp_path) if raw else tiny_project(tmp_path)
    assert cli("train", project, "-o", tmp_path / "r", "--epochs", "2", "--workers", "1").code == 0
    result = tmp_path / "r" / "results.nnp"
    done = cli("export-onnx", result, "-o", tmp_path / "m.onnx")
    assert done.code == 0, done.err
    assert ("raw pixel values 0-255" if raw else "pixel values divided by 255") in done.out and "any batch size" in done.out
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["input_scale"] == ("0-255" if raw else "0-1 (pixels / 255)") and meta["input_shape"] == "N,1,8,8"
    assert json.loads(meta["class_names"]) == ["c0", "c1", "c2"]
    evaluated = cli("evaluate", result, "--dataset", tmp_path / "validation.csv", "-o", tmp_path / "e")
    assert evaluated.code == 0, evaluated.err
    expected = json.loads((tmp_path / "e" / "evaluation.json").read_text())["confusion_matrix"]
    dataset = load_dataset(tmp_path / "validation.csv", tmp_path / "cache", name="v", normalize=False)
    scale = 1.0 if meta["input_scale"] == "0-255" else 1 / 255
    matrix = np.zeros((3, 3), dtype=int)
    for i in range(dataset.size):  # one image at a time
        image = dataset.batch(np.array([i]))["x"].astype(np.float32) * scale
        matrix[int(dataset.arrays["y"].reshape(-1)[i]), int(onnx_scores(tmp_path / "m.onnx", image).argmax())] += 1
    assert matrix.tolist() == expected
    assert (tmp_path / "r" / "results.onnx").is_file()  # train's own, with the same metadata
    assert {p.key: p.value for p in onnx.load(str(tmp_path / "r" / "results.onnx")).metadata_props}["input_scale"] == \
        meta["input_scale"]


def test_a_project_without_parameters_is_not_exported_with_random_weights(cli, tmp_path):
    project = tiny_project(tmp_path)
    assert cli("convert", project, tmp_path / "def.nntxt").code == 0
    (tmp_path / "def.h5").unlink()  # the definition alone
    result = cli("export-onnx", tmp_path / "def.nntxt", "-o", tmp_path / "m.onnx")
    assert result.code == 2 and "holds no values for" in result.err and "random" in result.err, result.err
    assert not (tmp_path / "m.onnx").exists()


def test_a_text_project_exports_with_its_parameter_file(cli, tmp_path):
    """A project text with its ``.h5`` beside it exports with its trained weights: the export now goes through an .nnp
    of the project as loaded (what an .sdcproj needs: NNabla's importer cannot read one and failed with a traceback,
    ``test_nnc_weights``), and the text's parameter file must still arrive."""
    project = tiny_project(tmp_path)
    train(project, tmp_path / "r", TrainOptions(progress=False, epochs=1, workers=1))
    result = tmp_path / "r" / "results.nnp"
    assert cli("convert", result, tmp_path / "t.nntxt").code == 0 and (tmp_path / "t.h5").is_file()
    done = cli("export-onnx", tmp_path / "t.nntxt", "-o", tmp_path / "t.onnx", "--batch-size", "4")
    assert done.code == 0, done.err
    dataset, batch = images(tmp_path / "validation.csv", result, 4)
    np.testing.assert_allclose(onnx_scores(tmp_path / "t.onnx", batch), predict(result, dataset, batch_size=4)[:4],
                               atol=1e-4)
