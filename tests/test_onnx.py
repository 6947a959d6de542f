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
