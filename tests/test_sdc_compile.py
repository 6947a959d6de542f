"""The ``.sdcproj`` compiler (issue 28): NNC's samples compiled and compared, as graphs, with the prototxt NNC's own
converter made of each; the compiled project runs in NNabla; bad projects are one line."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from google.protobuf import text_format
from nnabla.utils import nnabla_pb2

from nnc_tools.errors import NncToolsError
from nnc_tools.formats.proto_compare import compare_projects
from nnc_tools.formats.sdc_compile import compile_sdcproj
from nnc_tools.formats.sdc_values import evaluate, expressions, number
from nnc_tools.formats.sdcproj import SdcProject, load_sdcproj

from .conftest import needs_samples, nnc_samples

# What the compiler does not do yet, each sample with the reason (strict: one that starts to pass must leave the list).
NOT_YET = {
}


def _theirs(sample):
    proto = nnabla_pb2.NNablaProtoBuf()
    text_format.Merge(sample.with_suffix(".prototxt").read_text(encoding="utf-8"), proto)
    return proto


def _differences(sample):
    try:
        ours = compile_sdcproj(load_sdcproj(sample))
    except NncToolsError as e:
        return [str(e)]
    return compare_projects(ours, _theirs(sample))


@needs_samples
@pytest.mark.parametrize("sample", [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[p.stem]))
                                    if p.stem in NOT_YET else p for p in nnc_samples("*.sdcproj")], ids=lambda p: p.stem)
def test_sample_compiles_to_what_nncs_converter_makes(sample):
    """Same networks; per network the same functions (type, *_param, inputs and outputs by name), variables (shape,
    initializer); the same optimizers, monitors, executors, datasets and configuration. Function order is not
    compared (see ``network_order``: the converter breaks ties its own way in 14 samples)."""
    differences = _differences(sample)
    assert not differences, "\n".join(differences[:10])


@needs_samples
def test_the_comparison_sees_a_changed_function_a_shape_and_a_multiplier():
    """The comparison the sample test relies on is not blind: one changed field anywhere is a difference."""
    sample = next(p for p in nnc_samples("LeNet.sdcproj"))
    theirs = _theirs(sample)
    assert compare_projects(compile_sdcproj(load_sdcproj(sample)), theirs) == []
    for change in (lambda p: setattr(p.network[0].function[1].convolution_param, "group", 2),
                   lambda p: p.network[1].variable[0].shape.dim.__setitem__(1, 3),
                   lambda p: setattr(p.optimizer[0].parameter_variable[0], "learning_rate_multiplier", 0.0),
                   lambda p: p.network[2].function.pop(),
                   lambda p: setattr(p.training_config, "max_epoch", 7)):
        ours = compile_sdcproj(load_sdcproj(sample))
        change(ours)
        assert compare_projects(ours, theirs), change


def _project(tmp_path, layers, links, extra=""):
    """A one-network .sdcproj from (type, name, {property: value}) layers and (source, dest[, dest pin]) links."""
    lines = ["[Engine]", "SDeepEngineType=NNabla", "[Network_Global]", f"NumLayer={len(layers)}", f"NumLink={len(links)}"]
    for i, (kind, name, props) in enumerate(layers):
        lines += [f"[Layer_{i}]", f"ID={i}", f"Type={kind}"]
        props = {"Name": name, **props}
        for k, (key, value) in enumerate(props.items()):
            lines += [f"Property_{k}_Name={key}", f"Property_{k}_Value={value}"]
        lines.append(f"NumProperty={len(props)}")
    for i, (src, dst, *pin) in enumerate(links):
        lines += [f"[Link_{i}]", f"ID={i}", f"SourceLayerID={src}", "SourcePinIndex=0", f"DestLayerID={dst}",
                  f"DestPinIndex={pin[0] if pin else 0}"]
    lines += ["[Dataset]", "Num=1", "MainIndex=0", "[Dataset_0]", "Name=Training", "URI=train.csv", "Shuffle=1",
              "EnableCache=0", "ImageNormalization=1", "NumData=40", "[Config]", "MaxEpoch=2", "BatchSize=8",
              "NumOptimizer=1", "NumMonitor=0", "NumExecutor=1", "[Optimizer_0]", "Optimizer_Name=Optimizer",
              "Optimizer_NetworkName=Main", "Optimizer_DatasetName=Training", "SolverName=Sgd", "SolverParameterNum=1",
              "SolverParameterName_0=LearningRate", "SolverParameter_0=0.1", "[Executor_0]", "Executor_Name=Executor",
              "Executor_NetworkName=MainRuntime", "Executor_DatasetName=Training"]
    path = tmp_path / "p.sdcproj"
    path.write_text("\n".join(lines + [extra]) + "\n")
    return path


_CONV = {"OutMaps": "4", "KernelShape": "3,3", "BorderMode": "same", "Padding": "*ConvolutionPaddingSize",
         "Strides": "1,1", "Dilation": "1,1", "WithBias": "True", "ParameterScope": "*Name",
         "W.Initializer": "NormalConvolutionGlorot", "W.InitializerMultiplier": "1", "W.LRateMultiplier": "0.0",
         "b.Initializer": "Constant", "b.InitializerMultiplier": "0.0", "b.LRateMultiplier": "1.0"}


def test_a_small_project_compiles_runs_in_nnabla_and_keeps_its_multipliers(tmp_path):
    """Shapes, the derived validation/runtime networks and the frozen W, then NNabla's own loader builds it."""
    from nnabla.utils.load import load

    from nnc_tools.formats.nnp import network_text

    path = _project(tmp_path, [("Input", "Input", {"Size": "3,12,12", "Dataset": "x"}),
                               ("Convolution", "Convolution", _CONV),
                               ("MaxPooling", "MaxPooling", {"KernelShape": "2,2", "Strides": "*KernelShape",
                                                             "IgnoreBorder": "True", "Padding": "0,0"}),
                               ("Dropout", "Dropout", {"P": "0.5"}),
                               ("Affine", "Affine", {"OutShape": "Input[0]*2+1", "ParameterScope": "*Name"}),
                               ("Softmax", "Softmax", {"Axis": "0"}),
                               ("CategoricalCrossEntropy", "Loss", {"Axis": "0", "T.Dataset": "y"})],
                       [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)])
    proto = compile_sdcproj(load_sdcproj(path))
    nets = {n.name: n for n in proto.network}
    assert list(nets) == ["Main", "MainRuntime"]
    shapes = {v.name: list(v.shape.dim) for v in nets["Main"].variable}
    assert shapes["Convolution"] == [-1, 4, 12, 12] and shapes["MaxPooling"] == [-1, 4, 6, 6]
    assert shapes["Affine/affine/W"] == [144, 9] and shapes["Loss_T"] == [-1, 1]
    assert "Dropout" not in {f.name for f in nets["MainRuntime"].function}
    assert {f.name for f in nets["MainRuntime"].function} == {"Convolution", "MaxPooling", "Affine", "Softmax"}
    multipliers = {p.variable_name: p.learning_rate_multiplier for p in proto.optimizer[0].parameter_variable}
    assert multipliers["Convolution/conv/W"] == 0.0 and multipliers["Affine/affine/W"] == 1.0
    assert [(v.variable_name, v.data_name) for v in proto.executor[0].output_variable] == [("Softmax", "y'")]
    text = tmp_path / "p.nntxt"
    text.write_text(network_text(proto))
    import nnabla as nn

    nn.clear_parameters()  # NNabla's loader registers parameters globally: another test's Convolution/conv/W would clash
    info = load([str(text)], prepare_data_iterator=False)
    nn.clear_parameters()
    assert set(info.networks) == {"Main", "MainRuntime"}
    assert info.networks["MainRuntime"].variables["Softmax"].variable_instance.shape == (8, 9)


@pytest.mark.parametrize("layers,links,needle", [
    ([("Input", "Input", {"Size": "3,8,8"}), ("Unsupported", "Cell", {})], [(0, 1)],
     "type Unsupported is not one NNabla can run"),
    # NNC's LSTM cell concatenates [h, x] along the step's axis: a 3-D input's step cannot be
    ([("Input", "Input", {"Size": "5,3,2"}), ("LSTM", "Cell", {})], [(0, 1)], "its output shape does not follow"),
    ([("Input", "Input", {"Size": "3,Width*2,8"}), ("ReLU", "R", {})], [(0, 1)], "Size='3,Width*2,8' is not a shape"),
    ([("Input", "Input", {"Size": "4"}), ("Parameter", "P", {"Size": "*GraphOutput"}), ("ReLU", "R", {}),
      ("Add2", "A", {})], [(1, 2), (0, 3), (2, 3)], "layer P: Size *GraphOutput reaches no layer's parameter pin"),
    # neither NNC's catalogue nor NNabla has a Square (or Sqrt) function: once compiled to a type NNabla's loader refuses
    ([("Input", "Input", {"Size": "3,8,8"}), ("Square", "Sq", {})], [(0, 1)], "type Square is not one NNabla can run"),
    ([("Input", "Input", {"Size": "3,8,8"}), ("ReLU", "ReLU", {}), ("ReLU", "ReLU_2", {})], [(0, 1), (2, 1), (1, 2)],
     "a cycle"),
    ([("Input", "Input", {"Size": "3,8,8"}), ("Convolution", "Conv", dict(_CONV, KernelShape="9,9", BorderMode="valid",
                                                                             Padding="0,0"))],
     [(0, 1)], "its output shape does not follow from input [3, 8, 8]"),
    ([("Input", "Input", {"Size": "3,8,8"}), ("ReLU", "ReLU", {})], [(0, 1), (0, 7)], None),
    ([("Input", "Input", {"Size": "3,8,8"}), ("Affine", "Affine", {"OutShape": "Nowhere*2"})], [(0, 1)],
     "OutShape"),
])
def test_bad_projects_are_one_line_naming_the_layer(tmp_path, layers, links, needle):
    path = _project(tmp_path, layers, links)
    if needle is None:  # a link to a layer the file lacks: ignored as NNC's editor ignores it
        compile_sdcproj(load_sdcproj(path))
        return
    with pytest.raises(NncToolsError) as e:
        compile_sdcproj(load_sdcproj(path))
    assert needle in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_convert_writes_an_sdcproj_as_nnabla_text_through_the_cli(cli, tmp_path):
    path = _project(tmp_path, [("Input", "Input", {"Size": "1,6,6", "Dataset": "x"}), ("Affine", "Affine",
                                                                                        {"OutShape": "3"}),
                               ("SoftmaxCrossEntropy", "Loss", {"Axis": "0", "T.Dataset": "y"})], [(0, 1), (1, 2)])
    out = tmp_path / "out.nntxt"
    result = cli("convert", str(path), str(out))
    assert result.code == 0, result.err
    proto = nnabla_pb2.NNablaProtoBuf()
    text_format.Merge(out.read_text(), proto)
    assert [n.name for n in proto.network] == ["Main", "MainRuntime"]
    assert proto.optimizer[0].solver.sgd_param.lr == pytest.approx(0.1)
    bad = _project(tmp_path, [("Input", "Input", {"Size": "1,6,6"}), ("Fancy", "F", {})], [(0, 1)])
    (tmp_path / "bad.nntxt").unlink(missing_ok=True)
    result = cli("convert", str(bad), str(tmp_path / "bad.nntxt"))
    assert result.code == 2 and "type Fancy is not one NNabla can run" in result.err and not (tmp_path / "bad.nntxt").exists()


def test_values_evaluate_shape_expressions_and_nothing_else():
    assert evaluate("Input[1]*Input[2]", (3, 4, 5)) == 20 and evaluate("(Input[0]+1)//2", (7,)) == 4
    assert number("1.0/255") == pytest.approx(1 / 255) and number("-0.5") == -0.5
    for bad in ("__import__('os')", "Input.__class__", "Input[9]", "1/0", "a.b", "True"):
        with pytest.raises(ValueError):
            evaluate(bad, (3,))
    names = {"Maps": "32", "Half": "Maps/2"}.get
    assert expressions("Maps/4,3", (1,), names) == "8,3" and expressions("valid", (1,), names) == "valid"
    assert expressions("True", (1,), names) == "True" and expressions("Half*3", (1,), lambda n: {"Half": "16"}.get(n)) == "48"


def test_pooling_and_convolution_shapes_are_nnablas():
    """The shape rules against NNabla's own functions over a grid of sizes, kernels, strides and pads (a pooling
    kernel larger than its input too: GoogLeNet's 7x7 average pooling of a 6x6 map is 1x1, as in C++)."""
    import nnabla as nn
    import nnabla.functions as F

    from nnc_tools.formats.sdc_layers import LAYER_TYPES

    for size, k, s, p, ignore in itertools.product((5, 6, 8, 13), (1, 2, 3, 7), (1, 2, 3, 7), (0, 1), (True, False)):
        props = {"KernelShape": f"{k},{k}", "Strides": f"{s},{s}", "Padding": f"{p},{p}", "IgnoreBorder": str(ignore),
                 "OutMaps": "2", "Dilation": "1,1"}
        x = nn.Variable((1, 1, size, size))
        pooled = F.max_pooling(x, (k, k), (s, s), ignore_border=ignore, pad=(p, p)).shape
        assert (1,) + LAYER_TYPES["MaxPooling"].out(props, [(1, size, size)]) == pooled, props
        if k > size + 2 * p:
            continue
        w = nn.Variable((2, 1, k, k))
        conv = F.convolution(x, w, pad=(p, p), stride=(s, s)).shape
        assert (1,) + LAYER_TYPES["Convolution"].out(props, [(1, size, size)]) == conv, props


def test_an_sdcproj_without_networks_worth_compiling_is_refused(tmp_path):
    path = tmp_path / "p.sdcproj"
    path.write_text("[Engine]\nSDeepEngineType=NNabla\n[Config]\nBatchSize=x\n")
    with pytest.raises(NncToolsError, match="BatchSize"):
        compile_sdcproj(SdcProject(path, path.read_bytes()))


def _rgb_csvs(tmp_path, size: int, channels: int = 3, n: int = 12):
    from .conftest import write_image_csv

    return (write_image_csv(tmp_path, n, classes=3, size=size, channels=channels, name="training"),
            write_image_csv(tmp_path, 6, classes=3, size=size, channels=channels, seed=1, name="validation"))


@needs_samples
@pytest.mark.slow
def test_an_sdcproj_is_retargeted_and_trained_by_nnc_tl_and_nnabla_cli(cli, tmp_path):
    """NNC's LeNet.sdcproj, compiled here: retargeted to 3 classes (no weights: it says every parameter starts from its
    initializer), then one epoch under nnc-tl train and under nnabla_cli train."""
    import subprocess
    import sys
    from pathlib import Path

    train_csv, val_csv = _rgb_csvs(tmp_path, 28, channels=1)
    out = tmp_path / "lenet.nnp"
    result = cli("retarget", next(p for p in nnc_samples("LeNet.sdcproj")), "-o", out, "--train-csv", train_csv,
                 "--val-csv", val_csv, "--epochs", "1", "--batch-size", "4")
    assert result.code == 0, result.err
    assert "10 -> 3 classes" in result.out and "the head starts from its initializer" in result.out
    assert "LeNet.sdcproj holds no weights" in result.err and "8 parameters have no values" in result.out
    result = cli("train", out, "-o", tmp_path / "r")
    assert result.code == 0, result.err
    (tmp_path / "cli").mkdir()
    ran = subprocess.run([str(Path(sys.executable).with_name("nnabla_cli")), "train", "-c", str(out), "-o",
                          str(tmp_path / "cli")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ran.returncode == 0 and "Training Completed" in ran.stdout + ran.stderr, ran.stderr[-2000:]


@needs_samples
@pytest.mark.slow
@pytest.mark.parametrize("name,extra", [
    ("resnet-18", ["--input-size", "32"]),
    pytest.param("vgg-11", [], marks=pytest.mark.skipif(not __import__("os").environ.get("NNC_TL_BIG_MODELS"),
                                                         reason="VGG-11 at 224x224 trains about 80 s: NNC_TL_BIG_MODELS=1")),
])
def test_nncs_imagenet_sdcproj_retargets_into_an_nnp_that_trains(cli, tmp_path, name, extra):
    """The ImageNet projects leave their datasets without a URI (the converter then leaves them out): retarget names
    them from the project's sections and points them at the user's CSVs."""
    train_csv, val_csv = _rgb_csvs(tmp_path, 40 if extra else 224, n=12 if extra else 4)
    out = tmp_path / f"{name}.nnp"
    result = cli("retarget", next(p for p in nnc_samples(f"{name}.sdcproj")), "-o", out, "--train-csv", train_csv,
                 "--val-csv", val_csv, "--epochs", "1", "--batch-size", "2", *extra)
    assert result.code == 0, result.err
    assert "dataset Training: " in result.out
    result = cli("train", out, "-o", tmp_path / "r")
    assert result.code == 0, result.err
    assert (tmp_path / "r" / "results.nnp").is_file()


@pytest.mark.parametrize("kind", ["SoftSign", "Abs", "Tanh", "ACosh"])
def test_elementwise_layer_types_compile_with_their_input_shape(tmp_path, kind):
    """Each element-wise type is in the table under NNC's name (``SoftSign`` once ran together with its neighbour into
    one bogus name and was refused)."""
    path = _project(tmp_path, [("Input", "Input", {"Size": "2,5"}), (kind, "Layer", {})], [(0, 1)])
    proto = compile_sdcproj(load_sdcproj(path))
    shapes = {v.name: list(v.shape.dim) for v in proto.network[0].variable}
    assert shapes["Layer"] == [-1, 2, 5] and proto.network[0].function[0].type == kind


def test_working_memory_is_a_batch_buffer_written_by_an_identity(tmp_path):
    """NNC's WorkingMemory (resnet-110-mixup's X2/Y2): a Buffer with the batch axis, an Identity from its input when
    linked, in the optimizer at multiplier 0; what only feeds it is not a loss."""
    path = _project(tmp_path, [("Input", "Input", {"Size": "3,8,8"}), ("ReLU", "ReLU", {}),
                               ("WorkingMemory", "X2", {"Size": "3,8,8", "Initializer": "Normal",
                                                        "InitializerMultiplier": "1.0"}),
                               ("MulScalar", "MulScalar", {"Value": "0"})], [(0, 1), (1, 2), (2, 3)])
    proto = compile_sdcproj(load_sdcproj(path))
    main = next(n for n in proto.network if n.name == "Main")
    x2 = next(v for v in main.variable if v.name == "X2")
    assert (x2.type, list(x2.shape.dim), x2.initializer.type) == ("Buffer", [-1, 3, 8, 8], "Normal")
    assert [(f.type, list(f.input)) for f in main.function if f.name == "X2"] == [("Identity", ["ReLU"])]
    optimizer = proto.optimizer[0]
    assert [v.variable_name for v in optimizer.loss_variable] == ["MulScalar"]
    assert [(p.variable_name, p.learning_rate_multiplier) for p in optimizer.parameter_variable] == [("X2", 0.0)]


def test_an_executor_that_back_propagates_lists_its_losses_and_multipliers(tmp_path):
    """``NeedBackPropagation=1`` (semi_supervised_learning_VAT's noise estimate): the executor names a loss and each
    parameter's multiplier, as the converter writes them (checked with it on this project); without it, neither."""
    layers = [("Input", "Input", {"Size": "3,8,8"}), ("Convolution", "Conv", _CONV), ("Affine", "Affine",
              {"OutShape": "3", "WithBias": "False", "ParameterScope": "*Name", "W.LRateMultiplier": "0.5"}),
              ("Softmax", "Softmax", {}), ("CategoricalCrossEntropy", "Loss", {"T.Dataset": "y"})]
    links = [(0, 1), (1, 2), (2, 3), (3, 4)]
    for needed in (True, False):
        proto = compile_sdcproj(load_sdcproj(_project(tmp_path, layers, links,
                                                      f"NeedBackPropagation={int(needed)}")))
        e = proto.executor[0]
        assert e.need_back_propagation is needed
        assert len(e.loss_variable) == int(needed)  # the loss's name: the VAT sample's comparison checks it
        multipliers = {p.variable_name: p.learning_rate_multiplier for p in e.parameter_variable}
        assert multipliers == ({"Conv/conv/W": 0.0, "Conv/conv/b": 1.0, "Affine/affine/W": 0.5} if needed else
                               {"Conv/conv/W": 0.0, "Conv/conv/b": 0.0, "Affine/affine/W": 0.0})


FIXTURES = Path(__file__).parent / "sdc_fixtures"


@pytest.mark.parametrize("project", sorted(FIXTURES.glob("*.sdcproj")), ids=lambda p: p.stem)
def test_fixture_compiles_to_what_nncs_converter_makes(project):
    """Projects we wrote, with what NNC's converter made of them (``sdc_fixtures/README.md``): a property a project
    omits is the catalogue's value, as the converter has it (a convolution's padding from its BorderMode, 2x2 pooling,
    each parameter's initializer), not an empty field or a wrong shape."""
    differences = _differences(project)
    assert not differences, "\n".join(differences[:10])


@pytest.mark.parametrize("project", sorted(FIXTURES.glob("*.sdcproj")), ids=lambda p: p.stem)
def test_fixture_runs_in_nnabla(tmp_path, project):
    """NNabla's own loader builds every network of each compiled fixture: each catalogue type's function and
    ``*_param`` as NNabla's kernels take them (a type NNabla lacks, a wrong field, a shape its setup refuses fails)."""
    import nnabla as nn
    from nnabla.utils.load import load

    out = tmp_path / "p.nntxt"
    proto = compile_sdcproj(load_sdcproj(project))
    out.write_text(text_format.MessageToString(proto))
    nn.clear_parameters()  # (NNabla's loader registers parameters in its global scope)
    info = load([str(out)], prepare_data_iterator=False)
    assert set(info.networks) == {n.name for n in proto.network}


@needs_samples
def test_every_layer_type_the_compiler_knows_is_checked_against_the_converter():
    """Each type in the compiler's table is in a project NNC's converter compiled for us (a fixture) or in one of NNC's
    samples, so no type's rules are ours alone."""
    from nnc_tools.formats.sdc_layers import LAYER_TYPES

    def types(paths):
        return {line[5:].strip() for p in paths for line in p.read_text(encoding="utf-8").splitlines()
                if line.startswith("Type=")}

    checked = types(FIXTURES.glob("*.sdcproj")) | types(nnc_samples("*.sdcproj"))
    assert sorted(set(LAYER_TYPES) - checked) == []


def _frozen_conv_project(tmp_path, reference: str):
    """LeNet-like: a frozen Convolution whose W.File is ``reference`` (NNC's ``<job id>/<name with ~>``)."""
    conv = dict(_CONV, **{"W.File": reference})
    return _project(tmp_path, [("Input", "Input", {"Size": "3,8,8", "Dataset": "x"}), ("Convolution", "Convolution", conv),
                               ("Affine", "Affine", {"OutShape": "2"}), ("Softmax", "Softmax", {}),
                               ("CategoricalCrossEntropy", "Loss", {})], [(0, 1), (1, 2), (2, 3), (3, 4)])


def test_weight_references_load_from_the_projects_results(tmp_path):
    """``W.File = <job>/<name>``: NNC's runner loads that parameter from results/<job>/results.nnp; so does loading the
    .sdcproj here (also from <stem>.weights/<job>/, where apply-freeze --weights puts them), and a job not found is a
    warning, its parameters left to their initializers."""
    from collections import OrderedDict

    import numpy as np

    from nnc_tools.formats.nnp import Project, load_project, save_project
    from nnc_tools.formats.parameters import Parameter

    path = _frozen_conv_project(tmp_path, "job_7/Convolution~conv~W")
    assert load_project(path).parameters == OrderedDict()  # the job's folder is not there yet
    trained = np.arange(4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3)
    for folder in (tmp_path / "p.weights" / "job_7", tmp_path / "results" / "job_7"):
        folder.mkdir(parents=True)
        project = Project(compile_sdcproj(load_sdcproj(path)), OrderedDict(
            [("Convolution/conv/W", Parameter("Convolution/conv/W", trained)),
             ("Affine/affine/W", Parameter("Affine/affine/W", np.zeros((4 * 8 * 8, 2), np.float32)))]))
        save_project(project, folder / "results.nnp")
        loaded = load_project(path)
        assert list(loaded.parameters) == ["Convolution/conv/W"]  # only what the project references
        np.testing.assert_array_equal(loaded.parameters["Convolution/conv/W"].data, trained)
        trained = trained + 1  # results/<job>/ (NNC's own place) is read first


def test_training_refuses_a_frozen_parameter_nothing_gives_values(cli, tmp_path):
    """A frozen layer whose weights are not found would train frozen at random and finish with exit 0: refused in one
    line before any data is read, unless --allow-frozen-initial."""
    from .conftest import assert_refused

    path = _frozen_conv_project(tmp_path, "")
    result = cli("train", path, "-o", tmp_path / "r")
    assert_refused(result, "p.sdcproj", "1 parameters it keeps frozen", "Convolution/conv/W", "--allow-frozen-initial")
    assert not (tmp_path / "r").exists()
    path = _frozen_conv_project(tmp_path, "job_7/Convolution~conv~W")  # a reference to a job not there: said first
    warning, error = cli("train", path, "-o", tmp_path / "r").err.strip().splitlines()
    assert "reference NNC job job_7, whose results.nnp is in neither results/job_7/" in warning
    assert "1 parameters it keeps frozen" in error and not (tmp_path / "r").exists()
    allowed = cli("train", path, "-o", tmp_path / "r", "--allow-frozen-initial")
    assert "1 parameters it keeps frozen" not in allowed.err  # (it goes on to the data: train.csv is not there)


def test_an_output_layer_names_an_executor_output_and_is_no_loss(tmp_path):
    """NNC's Output layer (VariableName z) is no function: the converter lists its input among the runtime outputs as
    ``z`` (checked with create_prototxt), and also writes ``loss_variable: "Output"``, a variable no network has, which
    NNabla cannot train with: left out here, the one place the compiler parts from the converter on purpose."""
    path = _project(tmp_path, [("Input", "Input", {"Size": "4", "Dataset": "x"}), ("ReLU", "ReLU", {}),
                               ("SquaredError", "SquaredError", {}), ("Output", "Output", {"VariableName": "z"}),
                               ("Comment", "Comment", {"Comment": "a note"})], [(0, 1), (1, 2), (1, 3)])
    proto = compile_sdcproj(load_sdcproj(path))
    assert [(o.variable_name, o.data_name) for o in proto.executor[0].output_variable] == [("ReLU", "y'"), ("ReLU", "z")]
    assert [v.variable_name for v in proto.optimizer[0].loss_variable] == ["SquaredError"]
    assert not any(f.type in ("Output", "Comment") for n in proto.network for f in n.function)
