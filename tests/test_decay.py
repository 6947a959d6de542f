"""Layer-wise learning-rate decay in overlays (``decay``, ``from``, ``to``): the multipliers equal a table computed by
hand, combine with the other rules in file order, work on .nnp and .sdcproj alike, and refuse what a float32 cannot hold."""

from __future__ import annotations

import pytest

from nnc_tools.formats.nnp import load_project, multipliers
from nnc_tools.project.export import export_network
from nnc_tools.project.freeze import apply_freeze

from .conftest import NNC_SAMPLES, assert_refused, needs_samples


@pytest.fixture
def vgg(tmp_path):
    project = tmp_path / "vgg.nnp"
    export_network("mini_vggnet_mark2", project, classes=10, input_shape=(3, 16, 16), batch_size=4)
    return project


def overlay(tmp_path, text: str):
    path = tmp_path / "o.yaml"
    path.write_text(text)
    return path


def test_decay_equals_the_table_computed_by_hand(tmp_path, vgg):
    """Convolution ... Convolution_6 frozen, then 0.5 a layer from Affine_3 back to Convolution_7 (BN layers count)."""
    apply_freeze(vgg, overlay(tmp_path, "rules:\n  - up_to: Convolution_6\n    multiplier: 0\n"
                                        "  - decay: 0.5\n    from: Affine_3\n    to: Convolution_7\n"))
    m = multipliers(load_project(vgg).proto.optimizer[0])
    expected = {"Affine_3": 1, "Affine_2": 0.5, "Affine": 0.25, "BatchNormalization_9": 0.125, "Convolution_9": 0.0625,
                "BatchNormalization_8": 0.03125, "Convolution_8": 0.015625, "BatchNormalization_7": 0.0078125,
                "Convolution_7": 0.00390625}
    for layer, value in expected.items():
        for name, got in m.items():
            if name.startswith(layer + "/") and not name.endswith(("/mean", "/var")):
                assert got == pytest.approx(value, rel=1e-6), name
    for k in range(1, 7):  # up_to Convolution_6: it and everything before it (BatchNormalization_6 comes after)
        suffix = "" if k == 1 else f"_{k}"
        assert m[f"Convolution{suffix}/conv/W"] == 0
        assert m[f"BatchNormalization{suffix}/bn/gamma"] == (1 if k == 6 else 0)
    assert m["BatchNormalization_8/bn/mean"] == 0  # statistics are no layer of the decay


def test_the_from_layer_keeps_what_earlier_rules_gave_it(tmp_path, vgg):
    result = apply_freeze(vgg, overlay(tmp_path, "lr_multiplier: {Affine_3: 2}\nrules:\n  - decay: 0.5\n    from: Affine_3\n"
                                                 "    params: [W]\n"), dry_run=True)
    new = {c.target: c.new for c in result.changes}
    assert new["Affine_3/affine/W"] == 2 and new["Affine_2/affine/W"] == 1 and new["Affine/affine/W"] == 0.5
    assert "Affine_2/affine/b" not in new  # params: [W]
    assert new["Convolution/conv/W"] == pytest.approx(2 * 0.5 ** 11)  # to the first layer (with a W: 11 before Affine_3)


@pytest.mark.parametrize("text, message", [
    ("rules:\n  - decay: 0.5\n    from: Afine_3\n", "decay from 'Afine_3' matches nothing"),
    ("rules:\n  - decay: 1.0e-30\n    from: Affine_3\n", "which a float32 multiplier cannot hold"),
    ("rules:\n  - decay: -1\n    from: Affine_3\n", "rules[0].decay: expected a finite number > 0"),
    ("rules:\n  - decay: 0.5\n", "a decay rule needs 'from'"),
    ("rules:\n  - decay: 0.5\n    from: Affine\n    to: Affine_3\n", "decay from 'Affine' to 'Affine_3' matches nothing"),
])
def test_decay_mistakes_are_one_line(cli, tmp_path, vgg, text, message):
    before = vgg.read_bytes()
    result = cli("apply-freeze", vgg, "-c", overlay(tmp_path, text))
    assert_refused(result, message)
    assert vgg.read_bytes() == before


@needs_samples
def test_decay_on_an_sdcproj_gives_what_it_gives_on_the_converted_project(tmp_path):
    """LeNet.sdcproj and the prototxt NNC's converter made of it: the same overlay, the same multipliers."""
    from nnc_tools.formats.nnc_graph import expand, parameters
    from nnc_tools.formats.sdcproj import load_sdcproj

    text = "rules:\n  - decay: 0.1\n    from: Affine_2\n"
    sdc_out = tmp_path / "lenet.sdcproj"
    apply_freeze(NNC_SAMPLES / "LeNet.sdcproj", overlay(tmp_path, text), sdc_out)
    sites = parameters(expand(load_sdcproj(sdc_out), "Main"))
    on_sdcproj = {name: site.multiplier() for name, site in sites.items()}
    proto_out = tmp_path / "lenet.nntxt"
    apply_freeze(NNC_SAMPLES / "LeNet.prototxt", overlay(tmp_path, text), proto_out.with_suffix(".prototxt"))
    on_proto = multipliers(load_project(proto_out.with_suffix(".prototxt")).proto.optimizer[0])
    assert on_sdcproj["Convolution/conv/W"] == pytest.approx(0.1 ** 3)  # Affine, Convolution_2, Convolution before it
    for name, value in on_sdcproj.items():
        assert on_proto[name] == pytest.approx(value, rel=1e-6), name
