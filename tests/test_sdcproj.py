"""apply-freeze and info on NNC's .sdcproj: byte preservation, added properties, multi-network files, the NNC samples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nnc_tools.formats.nnc_graph import expand, parameters
from nnc_tools.formats.sdcproj import load_sdcproj
from nnc_tools.project.freeze import apply_freeze

from .conftest import NNC_SAMPLES, changed_lines, layer, multi, needs_samples, single


def write(tmp_path, name, text, overlay):
    project = tmp_path / name
    project.write_bytes(text.encode())
    path = tmp_path / "o.yaml"
    path.write_text(overlay)
    return project, path


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


def with_unit(text: str, network: str, calls: str, name: str = "MyUnit", index: int = 9) -> str:
    """``text`` with a Unit layer ``name`` calling network ``calls`` added to ``network``."""
    unit = [line.replace("{prefix}", f"{network}_") for line in layer(index, 90 + index, "Unit", name, [("Network", calls),
                                                                                                  ("ParameterScope", "*Name")])]
    return text + "\n".join(unit) + "\n"


@pytest.mark.parametrize("case", ["missing", "cycle"])
def test_bad_units_are_one_line_and_nothing_written(cli, tmp_path, case):
    text = with_unit(multi(), "Train", "Nowhere") if case == "missing" else \
        with_unit(with_unit(multi(), "Train", "Valid"), "Valid", "Train")
    project, overlay = write(tmp_path, "u.sdcproj", text, "freeze: [Convolution]\n")
    result = cli("apply-freeze", project, "-c", overlay, "-o", tmp_path / "out.sdcproj")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert ("'Nowhere', which the project does not have" if case == "missing" else "inside itself") in result.err
    assert str(project) in result.err and not (tmp_path / "out.sdcproj").exists()
    assert cli("info", project).code == 2


def test_a_unit_called_twice_with_separate_scopes_gets_separate_multipliers(tmp_path):
    """Two calls of one Unit network, scopes A and B: freezing A's convolution writes A's override only."""
    text = with_unit(with_unit(multi(), "Train", "Valid", "A"), "Train", "Valid", "B", 10)
    project, overlay = write(tmp_path, "u.sdcproj", text, "optimizers: [Optimizer]\nrules:\n  - match: 'A/Convolution'\n"
                             "    multiplier: 0\n")
    apply_freeze(project, overlay)
    sites = parameters(expand(load_sdcproj(project), "Train"))
    assert sites["A/Convolution/conv/W"].multiplier() == 0 and sites["B/Convolution/conv/W"].multiplier() == 1
    assert sites["Convolution/conv/W"].multiplier() == 1  # the caller's own layer of the same name
    assert sites["A/Convolution/conv/W"].deciding()[1] == "Convolution.W.LRateMultiplier"  # on the Unit layer A


def test_frozen_bn_writes_batchstat_false_and_restores_it(tmp_path):
    project, overlay = write(tmp_path, "p.sdcproj", single(), "freeze: [BatchNormalization]\n")
    before = project.read_bytes()
    result = apply_freeze(project, overlay)
    assert [(c.target, c.old, c.new) for c in result.changes if not c.multiplier] == [("BatchNormalization BatchStat", 1.0, 0.0)]
    bn = next(layer for layer in load_sdcproj(project).layers("Main") if layer.type == "BatchNormalization")
    assert bn.properties["BatchStat"] == "False"
    diff = changed_lines(before, project.read_bytes())
    assert all(re.match(r"^[-+] (Property_\d+_(Name|Value)=|NumProperty=)", d) for d in diff)
    overlay.write_text("lr_multiplier: {BatchNormalization: 1}\n")
    apply_freeze(project, overlay)
    bn = next(layer for layer in load_sdcproj(project).layers("Main") if layer.type == "BatchNormalization")
    assert bn.properties["BatchStat"] == "True"


def _japanese_lenet(tmp_path, name_bytes: bytes) -> Path:
    raw = (NNC_SAMPLES / "LeNet.sdcproj").read_bytes().replace(b"Property_0_Value=Affine_2", b"Property_0_Value=" + name_bytes)
    path = tmp_path / "jp.sdcproj"
    path.write_bytes(raw)
    return path


@needs_samples
def test_a_cp932_project_reads_writes_and_prints_as_japanese(cli, tmp_path):
    """An .sdcproj saved by a Japanese Windows (cp932 layer names): info shows the names, --json is valid JSON (no lone
    surrogates), an overlay naming the layer in UTF-8 YAML matches it, and only the multiplier lines change."""
    path = _japanese_lenet(tmp_path, "全結合".encode("cp932"))
    text = cli("info", path)
    assert text.code == 0 and "全結合" in text.out
    js = cli("info", path, "--json")
    assert js.code == 0 and "全結合" in json.dumps(json.loads(js.out), ensure_ascii=False)
    (tmp_path / "o.yaml").write_text("freeze: [全結合]\n", encoding="utf-8")
    out = tmp_path / "out.sdcproj"
    assert cli("apply-freeze", path, "-c", tmp_path / "o.yaml", "-o", out).code == 0
    before, after = path.read_bytes().split(b"\n"), out.read_bytes().split(b"\n")
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 2 and all(b"_Value=0.0" in b for _, b in changed)


@needs_samples
def test_bytes_in_no_encoding_stay_as_they_are_and_json_stays_valid(cli, tmp_path):
    path = _japanese_lenet(tmp_path, b"Affine_\x81")  # a cp932 lead byte without its trail byte: no encoding fits
    js = cli("info", path, "--json")
    assert js.code == 0, js.err
    names = json.dumps(json.loads(js.out), ensure_ascii=False)  # valid JSON
    assert "\\udc" not in js.out and "Affine_\\\\x81" in js.out, js.out[:400]  # escaped bytes, no lone surrogates
    names.encode("utf-8")  # strict: a lone surrogate would fail here
    (tmp_path / "o.yaml").write_text("freeze: [Convolution]\n")
    out = tmp_path / "out.sdcproj"
    assert cli("apply-freeze", path, "-c", tmp_path / "o.yaml", "-o", out).code == 0
    assert b"Property_0_Value=Affine_\x81" in out.read_bytes()


@needs_samples
@pytest.mark.parametrize("encoding, expected", [("cp932", "oConv2/affine/W"), ("utf-8", "Conv2/affine/W")])
def test_non_ascii_names_lose_their_bytes_as_nncs_converter_drops_them(tmp_path, encoding, expected):
    """NNC's converter drops a layer name's non-ASCII bytes byte by byte in the file's encoding: 'バConv2' in cp932 is
    0x83 'o' 'Conv2', whose ASCII trail byte stays ('oConv2'); in UTF-8 all three bytes of 'バ' go ('Conv2')."""
    path = _japanese_lenet(tmp_path, "バConv2".encode(encoding))
    names = set(parameters(expand(load_sdcproj(path), load_sdcproj(path).network_names()[0])))
    assert f"{expected}" in names and "Affine_2/affine/W" not in names
