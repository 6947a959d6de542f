"""apply-freeze and info on NNC's .sdcproj: byte preservation, added properties, multi-network files, the NNC samples."""

from __future__ import annotations

import difflib
import json
import re

import pytest

from nnc_tools.formats.nnp import load_project, multipliers
from nnc_tools.formats.sdcproj import load_sdcproj
from nnc_tools.project.freeze import apply_freeze

from .conftest import multi, needs_samples, nnc_samples, single


def write(tmp_path, name, text, overlay):
    project = tmp_path / name
    project.write_bytes(text.encode())
    path = tmp_path / "o.yaml"
    path.write_text(overlay)
    return project, path


def changed_lines(before: bytes, after: bytes):
    a, b = before.decode().splitlines(keepends=True), after.decode().splitlines(keepends=True)
    return [line for line in difflib.ndiff(a, b) if line[:1] in "+-"]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_only_multiplier_lines_change_and_line_endings_survive(tmp_path, newline):
    text = single(newline)
    project, overlay = write(tmp_path, "p.sdcproj", text, "rules:\n  - up_to: Convolution\n    multiplier: 0\n")
    result = apply_freeze(project, overlay)
    after = project.read_bytes()
    diff = changed_lines(text.encode(), after)
    assert sorted(diff) == sorted([
        f"- Property_5_Value=1.0{newline}", f"+ Property_5_Value=0.0{newline}",
        f"- Property_6_Value=1.0{newline}", f"+ Property_6_Value=0.0{newline}",
    ])
    assert after.count(b"\r\n") == text.count("\r\n")
    assert {c.target for c in result.changes if c.changed} == {"Convolution W.LRateMultiplier", "Convolution b.LRateMultiplier"}


def test_network_order_comes_from_links_not_file_order(tmp_path):
    project, overlay = write(tmp_path, "p.sdcproj", single(), "rules:\n  - up_to: Convolution_2\n    multiplier: 0\n")
    apply_freeze(project, overlay)
    sdc = load_sdcproj(project)
    by_name = {layer.name: layer for layer in sdc.layers("Main")}
    assert [layer.name for layer in sdc.layers("Main")] == ["Input", "Convolution", "BatchNormalization", "ReLU", "Convolution_2", "Affine"]
    assert by_name["Affine"].multiplier("W") == 1.0
    assert by_name["Convolution_2"].multiplier("W") == 0.0


def test_missing_properties_are_added_and_numproperty_bumped(tmp_path):
    project, overlay = write(tmp_path, "p.sdcproj", single(), "rules:\n  - up_to: Convolution_2\n    multiplier: 0\n"
                             "  - match: BatchNormalization\n    params: [mean, var]\n    multiplier: 0\n")
    before = project.read_bytes()
    apply_freeze(project, overlay)
    diff = changed_lines(before, project.read_bytes())
    added = [d for d in diff if d.startswith("+ Property_")]
    # Convolution_2 had neither W nor b; BatchNormalization had no mean/var but those default to 0 already.
    assert "+ Property_5_Name=W.LRateMultiplier\n" in added and "+ Property_6_Value=0.0\n" in added
    assert "- NumProperty=5\n" in diff and "+ NumProperty=7\n" in diff
    assert not any("mean.LRateMultiplier" in d for d in diff)
    layers = {layer.name: layer for layer in load_sdcproj(project).layers("Main")}
    assert layers["Convolution_2"].properties["b.LRateMultiplier"] == "0.0"


def test_multi_network_overlay_selects_networks_through_optimizers(tmp_path):
    project, overlay = write(tmp_path, "m.sdcproj", multi(), "optimizers: [Optimizer]\nfreeze: [Convolution]\n")
    result = apply_freeze(project, overlay)
    assert {c.target for c in result.changes if c.changed} == {"Train:Convolution W.LRateMultiplier", "Train:Convolution b.LRateMultiplier"}
    sdc = load_sdcproj(project)
    assert {layer.name: layer.multiplier("W") for layer in sdc.layers("Train")}["Convolution"] == 0.0
    assert {layer.name: layer.multiplier("W") for layer in sdc.layers("Valid")}["Convolution"] == 1.0
    assert sdc.get("Optimizer_0", "LearningRateMultiplier") == "0.5"  # the LR decay factor is not a layer multiplier
    assert sdc.get("Unknown_Section", "Whatever") == "keep me"


def test_default_is_every_optimizers_network(tmp_path):
    project, overlay = write(tmp_path, "m.sdcproj", multi(), "freeze: [Affine]\n")
    result = apply_freeze(project, overlay)
    assert {c.optimizer for c in result.changes} == {"Optimizer", "Optimizer_2"}


def test_info_reads_sdcproj(cli, tmp_path):
    project, _ = write(tmp_path, "m.sdcproj", multi(), "{}")
    result = cli("info", project, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert [n["name"] for n in data["networks"]] == ["Train", "Valid"]
    conv = next(layer for layer in data["networks"][0]["layers"] if layer["name"] == "Convolution")
    assert conv["multipliers"] == {"W": 1.0, "b": 1.0}
    assert conv["parameters"] == ["Convolution/conv/W", "Convolution/conv/b"]
    bn = next(layer for layer in data["networks"][0]["layers"] if layer["name"] == "BatchNormalization")
    assert bn["multipliers"]["mean"] == 0.0  # absent property: NNC's default
    text = cli("info", project)
    assert "network Train" in text.out and "W.LRateMultiplier=1" in text.out


def test_unchanged_file_is_byte_identical(tmp_path):
    text = single("\r\n")
    project, _ = write(tmp_path, "p.sdcproj", text, "")
    assert load_sdcproj(project).to_bytes() == text.encode()


# -------------------------------------------------------------------------------------------------- the NNC samples

_REPEAT = re.compile(r"\{[^}]*\}")


def _by_layer(proto_multipliers):
    """Parameter names in NNC's prototxt carry repeat markers (Convolution_5{RepeatStart}/conv/W); key by layer+param."""
    out = {}
    for name, value in proto_multipliers.items():
        parts = _REPEAT.sub("", name).split("/")
        out[(parts[0], parts[-1])] = value
    return out


# Samples whose Unit layers, several networks or execution order the .sdcproj back-end does not resolve yet (issue 17):
# the overlay does not give the multipliers NNC's converter gives. Strict: a sample that starts agreeing fails here, so
# that it leaves this list.
_NOT_YET = {
    "GoogLeNet.sdcproj", "gated_recurrent_unitGRU.sdcproj", "mnist_dcgan.sdcproj", "mnist_vae.sdcproj", "nin.sdcproj",
    "resnet-110-cutout.sdcproj", "shufflenet.sdcproj", "squeezenet11.sdcproj", "stacked_GRU.sdcproj",
    "synthetic_image_object_detection.sdcproj", "vgg-11.sdcproj", "wav_keyboard_sound.sdcproj",
}


def _sample_cases(pattern: str) -> list:
    return [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="issue 17: Units, networks, order"))
            if p.name in _NOT_YET else p for p in nnc_samples(pattern)]


@needs_samples
@pytest.mark.parametrize("sample", _sample_cases("*.sdcproj"), ids=lambda p: p.name)
def test_samples_sdcproj_and_converter_prototxt_agree(tmp_path, sample):
    """The same overlay on a sample .sdcproj and on NNC's own conversion of it gives the same multipliers, in the
    network the converter's first optimizer trains."""
    prototxt = sample.with_suffix(".prototxt")
    network = load_project(prototxt).proto.optimizer[0].network_name
    layers = [layer for layer in load_sdcproj(sample).layers(network) if layer.parameter_names()]
    middle = layers[len(layers) // 2].name
    overlay = tmp_path / "o.yaml"
    last = layers[-1]  # the head (an Affine in most samples; a Convolution in a segmentation network)
    overlay.write_text(f"rules:\n  - up_to: {middle}\n    multiplier: 0\n  - match: '{last.name}'\n"
                       f"    params: [{last.parameter_names()[0]}]\n    multiplier: 2.5\n")
    apply_freeze(sample, overlay, tmp_path / "out.sdcproj")
    apply_freeze(prototxt, overlay, tmp_path / "out.prototxt")
    expected = _by_layer(multipliers(load_project(tmp_path / "out.prototxt").proto.optimizer[0]))
    sdc = {(layer.name, p): layer.multiplier(p) for layer in load_sdcproj(tmp_path / "out.sdcproj").layers(network)
           for p in layer.parameter_names()}
    assert {k: sdc[k] for k in expected} == expected
    assert 0.0 in expected.values() and len(set(expected.values())) > 1
    diff = changed_lines(sample.read_bytes(), (tmp_path / "out.sdcproj").read_bytes())
    assert diff and all(re.match(r"^[-+] Property_\d+_Value=", d) for d in diff)
