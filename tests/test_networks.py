"""The network zoo and `nnc-tl export`: every registered network builds, is named the NNC way, exports a project NNabla
loads and nnabla_cli trains; --weights starts from exactly those weights; networks/ is what export writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nnabla as nn
import numpy as np
import pytest
from nnabla.utils.load import load as nnabla_load

from nnc_tools.formats.naming import layer_of
from nnc_tools.formats.nnp import load_project, multipliers
from nnc_tools.formats.schema import executor_classes
from nnc_tools.project.export import build_project, export_network
from nnc_tools.project.freeze import apply_freeze
from nnc_tools.project.networks import get_network, list_networks
from nnc_tools.project.passes import solver_proto

from .conftest import write_image_csv

REPO = Path(__file__).resolve().parents[1]
NETWORKS = list_networks()

# Parameter values (trainable and Batch Normalization statistics) for a 3x32x32 input and 10 classes; README lists them.
PARAMETER_COUNTS = {"mini_vggnet_mark2": 4_049_290, "mini_vggnet": 4_045_450, "resnet20": 274_730}


def test_registry_lists_the_documented_networks():
    assert set(PARAMETER_COUNTS) <= set(NETWORKS)
    readme = (REPO / "README.md").read_text()
    for name, count in PARAMETER_COUNTS.items():
        assert f"{count:,}" in readme, name


@pytest.mark.parametrize("name", NETWORKS)
def test_builds_runs_forward_and_counts(name):
    nn.clear_parameters()
    x = nn.Variable.from_numpy_array(np.random.RandomState(0).rand(2, 3, 32, 32).astype(np.float32))
    y = get_network(name).builder(x, 10, True)
    y.forward()
    assert y.shape == (2, 10) and np.isfinite(y.d).all()
    params = nn.get_parameters(grad_only=False)
    assert sum(p.size for p in params.values()) == PARAMETER_COUNTS[name]
    for pname in params:
        assert re.fullmatch(r"(Convolution|BatchNormalization|Affine)(_\d+)?/(conv|bn|affine)/(W|b|beta|gamma|mean|var)", pname), pname
    nn.clear_parameters()


@pytest.fixture(scope="module", params=NETWORKS)
def exported(request, tmp_path_factory):
    """Each zoo network exported once (5 classes, 3x16x16, batch 8, 3 epochs, Adam 0.002): its path and protobuf."""
    out = tmp_path_factory.mktemp("exported") / f"{request.param}.nnp"
    export_network(request.param, out, classes=5, input_shape=(3, 16, 16), batch_size=8, epochs=3, solver="Adam", lr=0.002)
    return out, load_project(out).proto


def test_exported_networks_and_functions_are_named_the_nnc_way(exported):
    _, proto = exported
    assert [n.name for n in proto.network] == ["Main", "MainValidation", "MainRuntime"]
    for net in proto.network:
        params = {v.name for v in net.variable if v.type == "Parameter"}
        for f in net.function:
            owned = [i for i in f.input if i in params]
            if owned:
                assert f.name == layer_of(owned[0])
            assert re.fullmatch(r"[A-Za-z0-9]+(_\d+)?", f.name), f.name


def test_exported_validation_and_runtime_networks_run_as_inference(exported):
    _, proto = exported
    main, valid, runtime = proto.network
    assert not any(f.type == "Dropout" for f in valid.function)
    assert not any(f.type == "Dropout" for f in runtime.function)
    assert runtime.function[-1].type == "Softmax" and main.function[-1].type == "CategoricalCrossEntropy"
    for f in valid.function:
        if f.type == "BatchNormalization":
            assert f.batch_normalization_param.batch_stat is False


def test_exported_optimizer_has_nnc_multipliers_and_the_solver_asked_for(exported):
    _, proto = exported
    m = multipliers(proto.optimizer[0])
    assert all(v == (0.0 if n.endswith(("/bn/mean", "/bn/var")) else 1.0) for n, v in m.items())
    assert proto.optimizer[0].solver.type == "Adam" and proto.optimizer[0].solver.adam_param.alpha == pytest.approx(0.002)


def test_exported_datasets_monitors_and_executor_are_nncs(exported):
    _, proto = exported
    assert [d.name for d in proto.dataset] == ["Training", "Validation"] and not proto.dataset[0].no_image_normalization
    assert [mo.name for mo in proto.monitor] == ["train_error", "valid_error"]
    assert proto.executor[0].output_variable[0].data_name == "y'"


def test_nnabla_loads_the_exported_project(exported):
    out, _ = exported
    info = nnabla_load([str(out)], prepare_data_iterator=False)
    assert set(info.networks) == {"Main", "MainValidation", "MainRuntime"}
    assert info.training_config.max_epoch == 3


def test_dropout_only_in_training_network(tmp_path):
    proto = build_project("mini_vggnet_mark2").proto
    kinds = {net.name: [f.type for f in net.function] for net in proto.network}
    assert kinds["Main"].count("Dropout") == 2
    assert "Dropout" not in kinds["MainValidation"] and "Dropout" not in kinds["MainRuntime"]
    assert kinds["Main"].count("Convolution") == 9 and kinds["Main"].count("Affine") == 3


@pytest.mark.parametrize("solver", ["Sgd", "momentum", "Nesterov", "Adam", "AdamW", "RMSprop", "Adagrad", "Lars", "AMSBound"])
def test_every_solver_gets_its_learning_rate(solver):
    s = solver_proto(solver, 0.123)
    param = getattr(s, s.WhichOneof("parameter"))
    assert any(getattr(param, k, None) == pytest.approx(0.123) for k in ("lr", "alpha", "eta"))


def test_weights_copies_matches_and_reinitialises_the_rest(tmp_path, cli):
    source = tmp_path / "source.nnp"
    export_network("mini_vggnet_mark2", source, classes=10, input_shape=(3, 16, 16), seed=1)
    target = tmp_path / "target.nnp"
    result = cli("export", "mini_vggnet_mark2", "-o", target, "--classes", "4", "--input", "3,16,16", "--weights", source)
    assert result.code == 0, result.err
    assert "re-initialised Affine_3/affine/W: shape (1024, 10) in the weights file, (1024, 4) here" in result.out
    assert "re-initialised Affine_3/affine/b" in result.out
    src, dst = load_project(source).parameters, load_project(target).parameters
    fresh = build_project("mini_vggnet_mark2", classes=4, input_shape=(3, 16, 16)).parameters
    for name, p in dst.items():
        if name.startswith("Affine_3/"):
            assert p.data.tobytes() == fresh[name].data.tobytes()
        else:
            assert p.data.tobytes() == src[name].data.tobytes(), name


def test_dataset_paths_are_relative_to_the_project_where_possible(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image_csv(tmp_path / "run" / "data", 8, name="training")
    write_image_csv(tmp_path / "other", 4, name="validation")
    export_network("resnet20", Path("run/p.nntxt"), train_csv="run/data/training.csv", val_csv="other/validation.csv")
    uris = [d.uri for d in load_project(tmp_path / "run" / "p.nntxt").proto.dataset]
    assert uris == ["data/training.csv", str(tmp_path / "other" / "validation.csv")]


def test_export_errors(cli, tmp_path):
    bad = cli("export", "mini_vgg", "-o", tmp_path / "x.nnp")
    assert bad.code == 2 and "closest: mini_vggnet" in bad.err
    ext = cli("export", "resnet20", "-o", tmp_path / "x.onnx")
    assert ext.code == 2 and "x.onnx" in ext.err
    solver = cli("export", "resnet20", "-o", tmp_path / "x.nnp", "--solver", "Adamm")
    assert solver.code == 2 and "unknown solver" in solver.err
    lion = cli("export", "resnet20", "-o", tmp_path / "x.nnp", "--solver", "Lion")  # nnabla_cli cannot build it
    assert lion.code == 2 and "unknown solver" in lion.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", NETWORKS)
def test_zoo_files_are_what_export_writes(tmp_path, name):
    fresh = tmp_path / f"{name}.nntxt"
    export_network(name, fresh)
    committed = REPO / "networks" / f"{name}.nntxt"
    assert committed.is_file(), f"run `make networks` to create {committed}"
    assert fresh.read_text() == committed.read_text(), f"{committed} is stale: run `make networks`"


@pytest.mark.parametrize(
    "overlay, frozen",
    [
        ("mini_vggnet_mark2.freeze-conv1-6.yaml", {f"Convolution{s}/conv/{p}" for s in ("", "_2", "_3", "_4", "_5", "_6") for p in "Wb"}),
        (
            "mini_vggnet_mark2.freeze-conv1-6-bn.yaml",
            {f"Convolution{s}/conv/{p}" for s in ("", "_2", "_3", "_4", "_5", "_6") for p in "Wb"}
            | {f"BatchNormalization{s}/bn/{p}" for s in ("", "_2", "_3", "_4", "_5", "_6") for p in ("beta", "gamma")},
        ),
    ],
)
def test_zoo_overlays(tmp_path, overlay, frozen):
    out = tmp_path / "m.nntxt"
    apply_freeze(REPO / "networks" / "mini_vggnet_mark2.nntxt", REPO / "networks" / overlay, out)
    m = multipliers(load_project(out).proto.optimizer[0])
    statistics = {n for n in m if n.endswith(("/mean", "/var"))}
    assert {n for n, v in m.items() if v == 0} - statistics == frozen


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_nnabla_cli_trains_the_exported_project(tmp_path, name):
    exe = Path(sys.executable).with_name("nnabla_cli")
    if not exe.exists():
        pytest.skip(f"{exe} is not installed")
    csv = write_image_csv(tmp_path, 24, size=16, channels=3)
    project = tmp_path / "p.nnp"
    export_network(name, project, train_csv=csv, val_csv=csv, classes=3, input_shape=(3, 16, 16), batch_size=8, epochs=1)
    assert load_project(project).proto.dataset[0].uri == "data.csv"  # relative to the project's folder
    assert load_project(project).proto.training_config.iter_per_epoch == 3
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([str(exe), "train", "-c", str(project), "-o", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epoch 1 of 1" in done.stdout + done.stderr
    assert (out / "results.nnp").is_file() and (out / "monitoring_report.yml").is_file()


def test_export_weights_from_another_network_is_refused(cli, tmp_path):
    other = tmp_path / "resnet.nnp"
    assert cli("export", "resnet20", "-o", other).code == 0
    result = cli("export", "mini_vggnet", "-o", tmp_path / "v.nnp", "--weights", other)
    assert result.code == 2 and "shares no parameter" in result.err and str(other) in result.err
    assert not (tmp_path / "v.nnp").exists()


@pytest.mark.parametrize("header, rows, given, expected", [
    ("x:image,y:label;a;b;c;d", ["0", "1"], None, "4 classes (from "),
    ("x:image,y:label", ["0", "5", "2"], None, "6 classes (from "),
    ("x:image,y:label;a;b;c;d", ["0"], "4", "4 classes (--classes)"),
    ("x:image,y:label;a;b;c;d", ["0"], "3", "its header names 4 classes, --classes says 3"),
    ("x:image,y:label;a", ["0"], None, "has 1 class (the names in its header); a classifier needs at least 2"),
    ("x:image,y:label", ["0", "x"], None, "row 2: label 'x' is not a number"),
    ("x:image", ["0"], None, "has no label column y"),
])
def test_export_takes_the_class_count_from_the_training_csv(cli, tmp_path, header, rows, given, expected):
    """Without --classes, export counts the training CSV's classes (its header's names, else its largest label + 1);
    a --classes the header contradicts, a single class or a CSV without labels is one line, nothing written."""
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join([header] + [f"img{i}.png,{r}" if "y:" in header else f"img{i}.png" for i, r in enumerate(rows)]) + "\n")
    out = tmp_path / "p.nnp"
    result = cli("export", "resnet20", "-o", out, "--train-csv", csv, *(["--classes", given] if given else []))
    if "classes (" in expected:
        assert result.code == 0, result.err
        assert expected in result.out
        n = int(expected.split()[0])
        assert executor_classes(load_project(out).proto) == n
    else:
        assert result.code == 2 and expected in result.err and "train.csv" in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1 and not out.exists()
