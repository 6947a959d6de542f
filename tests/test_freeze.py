"""apply-freeze on NNabla projects: rule kinds, precedence, both frozen spellings, optimizers, .nnp member preservation."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml

from nnc_tools.errors import NncToolsError
from nnc_tools.formats.naming import layer_of
from nnc_tools.formats.nnp import load_project, multipliers, network_text
from nnc_tools.project.freeze import apply_freeze, apply_to_proto
from nnc_tools.project.overlay import parse_overlay

from .conftest import nnabla_saved, tiny_project

PROJECT = """
network {
  name: "TrainNet"
  variable { name: "x" type: "Buffer" }
  variable { name: "Convolution/conv/W" type: "Parameter" }
  variable { name: "Convolution/conv/b" type: "Parameter" }
  variable { name: "BatchNormalization/bn/beta" type: "Parameter" }
  variable { name: "BatchNormalization/bn/gamma" type: "Parameter" }
  variable { name: "BatchNormalization/bn/mean" type: "Parameter" }
  variable { name: "BatchNormalization/bn/var" type: "Parameter" }
  variable { name: "Convolution_2/conv/W" type: "Parameter" }
  variable { name: "Unit/Affine/affine/W" type: "Parameter" }
  variable { name: "Affine_2/affine/W" type: "Parameter" }
  variable { name: "Affine_2/affine/b" type: "Parameter" }
  function { name: "TrainNet/Convolution" type: "Convolution" input: "x" input: "Convolution/conv/W"
             input: "Convolution/conv/b" output: "c1" }
  function { name: "TrainNet/BatchNormalization" type: "BatchNormalization" input: "c1" input: "BatchNormalization/bn/beta"
             input: "BatchNormalization/bn/gamma" input: "BatchNormalization/bn/mean" input: "BatchNormalization/bn/var" output: "b1" }
  function { name: "TrainNet/ReLU" type: "ReLU" input: "b1" output: "r1" }
  function { name: "TrainNet/Convolution_2" type: "Convolution" input: "r1" input: "Convolution_2/conv/W" output: "c2" }
  function { name: "TrainNet/Unit/Affine" type: "Affine" input: "c2" input: "Unit/Affine/affine/W" output: "a1" }
  function { name: "TrainNet/Affine_2" type: "Affine" input: "a1" input: "Affine_2/affine/W" input: "Affine_2/affine/b" output: "y" }
}
network {
  name: "HeadNet"
  variable { name: "x" type: "Buffer" }
  variable { name: "Affine_2/affine/W" type: "Parameter" }
  variable { name: "Affine_2/affine/b" type: "Parameter" }
  function { name: "Affine_2" type: "Affine" input: "x" input: "Affine_2/affine/W" input: "Affine_2/affine/b" output: "y" }
}
optimizer {
  name: "Optimizer"
  network_name: "TrainNet"
  parameter_variable { variable_name: "Convolution/conv/W" learning_rate_multiplier: 1 }
  parameter_variable { variable_name: "Convolution/conv/b" learning_rate_multiplier: 1 }
  parameter_variable { variable_name: "BatchNormalization/bn/beta" learning_rate_multiplier: 1 }
  parameter_variable { variable_name: "BatchNormalization/bn/gamma" learning_rate_multiplier: 1 }
  parameter_variable { variable_name: "BatchNormalization/bn/mean" learning_rate_multiplier: 0 }
  parameter_variable { variable_name: "BatchNormalization/bn/var" }
  parameter_variable { variable_name: "Convolution_2/conv/W" learning_rate_multiplier: 1 }
  parameter_variable { variable_name: "Unit/Affine/affine/W" learning_rate_multiplier: 1 }
  parameter_variable { variable_name: "Affine_2/affine/W" learning_rate_multiplier: 1 }
}
optimizer {
  name: "HeadOptimizer"
  network_name: "HeadNet"
  parameter_variable { variable_name: "Affine_2/affine/W" learning_rate_multiplier: 1 }
  parameter_variable { variable_name: "Affine_2/affine/b" learning_rate_multiplier: 1 }
}
"""


@pytest.fixture
def project(tmp_path) -> Path:
    path = tmp_path / "p.nntxt"
    path.write_text(PROJECT)
    return path


def run(project: Path, overlay: dict, **kwargs):
    path = project.with_name("overlay.yaml")
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    result = apply_freeze(project, path, **kwargs)
    out = load_project(result.output or project).proto
    return result, {o.name: multipliers(o) for o in out.optimizer}


def test_layer_names_are_nnc_layer_names():
    assert layer_of("Convolution_3/conv/W") == "Convolution_3"
    assert layer_of("Unit/Affine/affine/W") == "Unit/Affine"
    assert layer_of("conv1/W") == "conv1"


def test_up_to_follows_function_order_with_network_prefix(project):
    _, m = run(project, {"optimizers": ["Optimizer"], "rules": [{"up_to": "Convolution_2", "multiplier": 0}]})
    opt = m["Optimizer"]
    assert all(opt[k] == 0 for k in opt if k.startswith(("Convolution", "BatchNormalization")))
    assert opt["Unit/Affine/affine/W"] == 1 and opt["Affine_2/affine/W"] == 1
    assert m["HeadOptimizer"] == {"Affine_2/affine/W": 1, "Affine_2/affine/b": 1}


def test_up_to_a_function_without_parameters(project):
    _, m = run(project, {"optimizers": ["Optimizer"], "rules": [{"up_to": "ReLU", "multiplier": 0}]})
    assert m["Optimizer"]["BatchNormalization/bn/gamma"] == 0
    assert m["Optimizer"]["Convolution_2/conv/W"] == 1


def test_match_globs_layers_params_filter_and_full_names(project):
    overlay = {
        "optimizers": ["Optimizer"],
        "rules": [
            {"match": "BatchNorm*", "params": ["beta", "gamma"], "multiplier": 0},
            {"match": "Unit/Affine", "multiplier": 3},
            {"match": "Convolution*/conv/b", "multiplier": 0.5},
        ],
    }
    result, m = run(project, overlay)
    opt = m["Optimizer"]
    assert opt["BatchNormalization/bn/beta"] == 0 and opt["BatchNormalization/bn/gamma"] == 0
    assert opt["Unit/Affine/affine/W"] == 3
    assert opt["Convolution/conv/b"] == 0.5 and opt["Convolution/conv/W"] == 1
    assert result.warnings and "0.5" in result.warnings[0] and "full rate" in result.warnings[0]


def test_last_matching_rule_wins_and_shorthands_apply_in_document_order(project):
    overlay = {
        "optimizers": ["Optimizer"],
        "freeze": ["Convolution*"],
        "lr_multiplier": {"Convolution_2": 2},
        "rules": [{"match": "Convolution", "params": ["W"], "multiplier": 1}],
    }
    _, m = run(project, overlay)
    opt = m["Optimizer"]
    assert opt["Convolution/conv/W"] == 1 and opt["Convolution/conv/b"] == 0
    assert opt["Convolution_2/conv/W"] == 2


def test_both_frozen_spellings_read_as_zero(project):
    rules = [{"match": "BatchNormalization", "params": ["mean", "var"], "multiplier": 0}]
    result, m = run(project, {"optimizers": ["Optimizer"], "rules": rules})
    assert [c.old for c in result.changes] == [0.0, 0.0]
    assert not any(c.changed for c in result.changes)
    assert result.output is None  # nothing to change, nothing written


def test_missing_entries_are_added(project):
    _, m = run(project, {"optimizers": ["Optimizer"], "freeze": ["Affine_2"]})
    assert m["Optimizer"]["Affine_2/affine/b"] == 0  # was not listed at all
    assert "Affine_2/affine/b" in m["Optimizer"]


def test_every_optimizer_by_default(project):
    _, m = run(project, {"freeze": ["Affine_2"]})
    assert m["Optimizer"]["Affine_2/affine/W"] == 0
    assert m["HeadOptimizer"] == {"Affine_2/affine/W": 0, "Affine_2/affine/b": 0}


def test_idempotent_and_dry_run(project):
    overlay = {"rules": [{"up_to": "Convolution_2", "multiplier": 0}]}
    before = project.read_bytes()
    dry, _ = run(project, overlay, dry_run=True)
    assert dry.output is None and project.read_bytes() == before and any(c.changed for c in dry.changes)
    first, _ = run(project, overlay)
    after_first = project.read_bytes()
    assert first.output == project and after_first != before
    second, _ = run(project, overlay)
    assert second.output is None and not any(c.changed for c in second.changes)
    assert project.read_bytes() == after_first


def test_written_text_spells_frozen_explicitly(project):
    run(project, {"optimizers": ["Optimizer"], "freeze": ["Convolution"]})
    text = project.read_text()
    block = text[text.index('variable_name: "Convolution/conv/W"'):]
    assert block.splitlines()[1].strip() == "learning_rate_multiplier: 0"
    proto = load_project(project).proto
    assert network_text(proto).count("learning_rate_multiplier: 0") == 4  # conv W, b; bn mean, var


def test_nnp_only_the_network_member_changes(tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    with zipfile.ZipFile(src, "a") as zf:
        zf.writestr("Optimizer_Momentum_optimizer.h5.optimizer", b"\x89HDF state bytes")
    out = tmp_path / "b.nnp"
    overlay = tmp_path / "o.yaml"
    overlay.write_text("rules:\n  - up_to: BatchNormalization\n    multiplier: 0\n")
    result = apply_freeze(src, overlay, out)
    assert result.output == out
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b:
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            if name == "network.nntxt":
                assert a.read(name) != b.read(name)
            else:
                assert a.read(name) == b.read(name), name
                assert a.getinfo(name).CRC == b.getinfo(name).CRC
    m = multipliers(load_project(out).proto.optimizer[0])
    assert m["Convolution/conv/W"] == 0 and m["BatchNormalization/bn/gamma"] == 0 and m["Affine/affine/W"] == 1


def test_nnp_in_place_and_text_sidecar_left_alone(tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    overlay = tmp_path / "a.freeze.yaml"
    overlay.write_text("freeze: [Convolution]\n")
    result = apply_freeze(src)  # finds a.freeze.yaml beside the project
    assert result.overlay == overlay and result.output == src
    assert multipliers(load_project(src).proto.optimizer[0])["Convolution/conv/W"] == 0
    from nnc_tools.formats.nnp import save_project

    save_project(load_project(src), tmp_path / "t.nntxt")
    sidecar = (tmp_path / "t.h5").read_bytes()
    apply_freeze(tmp_path / "t.nntxt", overlay)
    assert (tmp_path / "t.h5").read_bytes() == sidecar
    assert multipliers(load_project(tmp_path / "t.nntxt").proto.optimizer[0])["Convolution/conv/W"] == 0


def test_overlay_rules_parse_in_document_order(tmp_path):
    text = "lr_multiplier: {A: 2}\nfreeze: [B]\nrules:\n  - match: C\n    multiplier: 1\n"
    overlay = parse_overlay(yaml.safe_load(text), tmp_path / "o.yaml")
    assert [(r.target, r.multiplier) for r in overlay.rules] == [("A", 2.0), ("B", 0.0), ("C", 1.0)]


def test_apply_to_proto_reports_old_and_new(project):
    proto = load_project(project).proto
    overlay = parse_overlay({"optimizers": ["HeadOptimizer"], "lr_multiplier": {"Affine_2": 10}}, project)
    changes = apply_to_proto(proto, overlay, project)
    assert [(c.target, c.optimizer, c.old, c.new) for c in changes] == [
        ("Affine_2/affine/W", "HeadOptimizer", 1.0, 10.0),
        ("Affine_2/affine/b", "HeadOptimizer", 1.0, 10.0),
    ]


def test_frozen_bn_switches_the_training_network_and_switches_back(tmp_path):
    """frozen_bn: inference sets batch_stat false where a BN's beta and gamma end frozen, shows it, writes it
    explicitly (NNC's importer reads an absent batch_stat as True), and a later overlay that unfreezes restores it."""
    project = nnabla_saved(tmp_path / "p.nnp")
    frozen = tmp_path / "f.nnp"
    first = apply_freeze(project, write_overlay(tmp_path, "freeze: [Convolution, BatchNormalization]\n"), frozen)
    switched = [c for c in first.changes if not c.multiplier]
    assert [(c.target, c.old, c.new) for c in switched] == [("BatchNormalization batch_stat", 1.0, 0.0)]
    main = next(n for n in load_project(frozen).proto.network if n.name == "Main")
    assert not next(f for f in main.function if f.type == "BatchNormalization").batch_normalization_param.batch_stat
    assert "batch_stat: false" in zipfile.ZipFile(frozen).read("network.nntxt").decode().split("MainValidation")[0]
    back = apply_freeze(frozen, write_overlay(tmp_path, "lr_multiplier: {BatchNormalization: 1}\n"))
    assert [(c.old, c.new) for c in back.changes if not c.multiplier] == [(0.0, 1.0)]
    main = next(n for n in load_project(frozen).proto.network if n.name == "Main")
    assert next(f for f in main.function if f.type == "BatchNormalization").batch_normalization_param.batch_stat
    kept = apply_freeze(project, write_overlay(tmp_path, "frozen_bn: batch\nfreeze: [BatchNormalization]\n"), tmp_path / "b.nnp")
    assert not [c for c in kept.changes if not c.multiplier]


def test_frozen_bn_must_be_inference_or_batch(tmp_path):
    with pytest.raises(NncToolsError, match="frozen_bn: expected inference or batch"):
        parse_overlay({"frozen_bn": "yes", "freeze": ["A"]}, tmp_path / "o.yaml")


def write_overlay(folder: Path, text: str) -> Path:
    path = folder / "o.yaml"
    path.write_text(text)
    return path


def test_a_new_rule_kind_is_one_class_in_the_table(tmp_path, monkeypatch):
    """The table drives parsing, key checks, selection and messages: a made-up kind (``after: LAYER`` sets every
    parameter after LAYER) registered in RULE_KINDS works in an overlay with nothing else changed."""
    from nnc_tools.project import rules

    class AfterRule(rules.NamedRule):  # no fields of its own: NamedRule's target and multiplier
        KEY = "after"
        KEYS = frozenset({"after", "params", "multiplier"})

        def select(self, view, chosen):
            limit = rules.position_of(self.target, view)
            return {} if limit is None else {s.parameter: self.multiplier for s in view.slots if s.position > limit}

    monkeypatch.setitem(rules.RULE_KINDS, "after", AfterRule)
    project = tiny_project(tmp_path)
    (tmp_path / "o.yaml").write_text("rules:\n  - after: Convolution\n    multiplier: 0.5\n")
    apply_freeze(project, tmp_path / "o.yaml")
    m = multipliers(load_project(project).proto.optimizer[0])
    assert m["Affine/affine/W"] == 0.5 and m["Convolution/conv/W"] == 1
    (tmp_path / "o.yaml").write_text("rules:\n  - after: Nowhere\n    multiplier: 0.5\n")
    with pytest.raises(NncToolsError, match="rules\\[0\\]: after 'Nowhere' matches nothing"):
        apply_freeze(project, tmp_path / "o.yaml")


def test_a_glob_leaves_bn_statistics_out_of_the_solver_unless_named(tmp_path):
    """``match: '*'`` at 1 trains every weight but not Batch Normalization's running mean and variance (a solver would
    decay them); ``params: [mean]`` or a full parameter name selects them."""
    project = tiny_project(tmp_path)
    overlay = tmp_path / "o.yaml"
    cases = [("lr_multiplier: {'*': 1}\n", 0.0, 0.0), ("rules:\n  - match: '*'\n    params: [mean]\n    multiplier: 1\n", 1.0, 0.0),
             ("lr_multiplier: {'BatchNormalization/bn/var': 1}\n", 0.0, 1.0)]
    for text, mean, var in cases:
        overlay.write_text(text)
        apply_freeze(project, overlay, tmp_path / "out.nnp")
        m = multipliers(load_project(tmp_path / "out.nnp").proto.optimizer[0])
        assert (m.get("BatchNormalization/bn/mean", 0.0), m.get("BatchNormalization/bn/var", 0.0)) == (mean, var), text
        assert m["Convolution/conv/W"] == 1
