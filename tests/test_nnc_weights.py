"""apply-freeze PROJECT.sdcproj --weights FROM.nnp: NNC's "Open in EDIT Tab with Weight". Every parameter FROM.nnp holds
gets the ``<job id>/<name with ~>`` reference NNC's runner loads, on the property NNC's converter reads (a Unit's
override where one exists), and the weights go where NNC looks for them: ``<job folder>/results.nnp``."""

from __future__ import annotations

import contextlib
import io
import shutil

import pytest

from nnc_tools.formats.nnc_graph import expand, parameters
from nnc_tools.formats.nnp import load_project, save_project
from nnc_tools.formats.sdcproj import load_sdcproj

from .conftest import NNC_SAMPLES, assert_refused, needs_samples


def source_weights(tmp_path, name):
    """NNC's converted prototxt with NNabla-initialised parameters, as a trained project (FROM.nnp)."""
    import nnabla as nn
    from nnabla.utils.load import load as nnabla_load

    nn.clear_parameters()
    with contextlib.redirect_stdout(io.StringIO()):
        nnabla_load([str(NNC_SAMPLES / f"{name}.prototxt")], prepare_data_iterator=False)
    nn.save_parameters(str(tmp_path / "w.h5"))
    out = tmp_path / "from.nnp"
    save_project(load_project(NNC_SAMPLES / f"{name}.prototxt", [tmp_path / "w.h5"]), out)
    return out


def references(path, network):
    """Each parameter's deciding File reference, read back the way NNC's converter reads it."""
    sdc = load_sdcproj(path)
    out = {}
    for name, site in parameters(expand(sdc, network)).items():
        keys = [(layer, key.replace(".LRateMultiplier", ".File") if key.endswith(".LRateMultiplier") else "File")
                for layer, key in site.keys]
        layer, key = next(((lay, k) for lay, k in keys if k in lay.properties), (None, None))
        out[name] = layer.properties[key] if layer is not None else ""
    return out


@needs_samples
@pytest.mark.parametrize("name, network", [("LeNet", "Main"), ("vgg-11", "Training")])
def test_every_parameter_gets_the_reference_nnc_loads(cli, tmp_path, name, network):
    weights = source_weights(tmp_path, name)
    (tmp_path / "o.yaml").write_text("freeze: ['Affine*']\n")
    out = tmp_path / "w.sdcproj"
    result = cli("apply-freeze", NNC_SAMPLES / f"{name}.sdcproj", "-c", tmp_path / "o.yaml", "-o", out, "--weights", weights)
    assert result.code == 0, result.err
    job = next(line for line in result.out.splitlines() if "take their weights from job" in line).split("job ")[1].split(";")[0]
    refs = references(out, network)
    assert refs and all(value == f"{job}/{param.replace('/', '~')}" for param, value in refs.items()), refs
    copied = tmp_path / "w.weights" / job / "results.nnp"
    assert copied.read_bytes() == weights.read_bytes()
    assert "0 left to their initializer" in result.out
    # and the project written reads back with those weights (compiled, each reference loaded from w.weights/<job>/)
    given, loaded = load_project(weights).parameters, load_project(out).parameters
    assert set(loaded) == set(refs) and all((loaded[n].data == given[n].data).all() for n in loaded)
    if name == "LeNet":  # a trained NNC project exports as it is: no random weights
        result = cli("export-onnx", out, "-o", tmp_path / "w.onnx")
        assert result.code == 0 and (tmp_path / "w.onnx").is_file(), result.err


@needs_samples
def test_weights_already_in_nncs_results_are_used_where_they_are(cli, tmp_path):
    job = tmp_path / "project.files" / "results" / "20241201_101010"
    job.mkdir(parents=True)
    shutil.copy(source_weights(tmp_path, "LeNet"), job / "results.nnp")
    (tmp_path / "o.yaml").write_text("freeze: [Convolution]\n")
    out = tmp_path / "w.sdcproj"
    result = cli("apply-freeze", NNC_SAMPLES / "LeNet.sdcproj", "-c", tmp_path / "o.yaml", "-o", out, "--weights",
                 job / "results.nnp")
    assert result.code == 0, result.err
    assert set(references(out, "Main").values()) >= {"20241201_101010/Affine_2~affine~W"}
    assert not (tmp_path / "w.weights").exists() and "where it is" in result.out


@needs_samples
def test_weights_of_another_network_and_weights_on_an_nnp_are_refused(cli, tmp_path):
    from .conftest import nnabla_saved

    other = nnabla_saved(tmp_path / "other.nnp")  # Convolution/conv/W ... of the tiny network: LeNet shares the names
    (tmp_path / "o.yaml").write_text("freeze: [Convolution]\n")
    lonely = tmp_path / "lonely.nnp"
    project = load_project(other)
    project.parameters = {f"Nothing/{k}": v for k, v in project.parameters.items()}
    save_project(project, lonely)
    result = cli("apply-freeze", NNC_SAMPLES / "LeNet.sdcproj", "-c", tmp_path / "o.yaml", "-o", tmp_path / "w.sdcproj",
                 "--weights", lonely)
    assert result.code == 2 and "shares no parameter name" in result.err and not (tmp_path / "w.sdcproj").exists()
    result = cli("apply-freeze", other, "-c", tmp_path / "o.yaml", "--weights", lonely)
    assert result.code == 2 and "--weights points an .sdcproj at NNC weights" in result.err


@needs_samples
def test_a_frozen_repeat_layer_without_weights_is_refused_not_left_random(cli, tmp_path):
    """A trained results.nnp names a Repeat block's parameters as NNabla's loader made them (``Convolution[0]/conv/W`` …),
    the .sdcproj as NNC's converter does (``Convolution{RepeatStart}/conv/W``): a reference cannot give each repetition
    its own weights, so an overlay that freezes the block is refused, naming both forms, and nothing is written; the
    explicit flag writes it and lists the block as left to its initializer."""
    from nnc_tools.formats.nnp import load_project

    weights = source_weights(tmp_path, "binary_semantic_segmentation")
    assert "Convolution[0]/conv/W" in load_project(weights).parameters  # the loader's names, as after training
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: ['Convolution*']\n")
    out = tmp_path / "out.sdcproj"
    args = ("apply-freeze", NNC_SAMPLES / "binary_semantic_segmentation.sdcproj", "-c", overlay, "-o", out, "--weights", weights)
    refused = cli(*args)
    assert_refused(refused, "from.nnp", "parameters the project freezes", "Convolution{RepeatStart}/conv/W",
                   "Convolution[0]/conv/W", "--allow-frozen-initial")
    assert not out.exists() and not out.with_suffix(".weights").exists()
    allowed = cli(*args, "--allow-frozen-initial")
    assert allowed.code == 0, allowed.err
    assert out.exists() and "Convolution{RepeatStart}/conv/W" in allowed.out  # listed among those left


@needs_samples
def test_weights_for_every_frozen_parameter_are_written(cli, tmp_path):
    """The same overlay on a project without Repeat blocks: every frozen parameter has its weights, nothing refused."""
    weights = source_weights(tmp_path, "LeNet")
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: ['Convolution*']\n")
    result = cli("apply-freeze", NNC_SAMPLES / "LeNet.sdcproj", "-c", overlay, "-o", tmp_path / "out.sdcproj", "--weights", weights)
    assert result.code == 0, result.err
    assert "0 left to their initializer" in result.out
