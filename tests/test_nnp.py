"""Project files: every format round-trips losslessly, unknown .nnp members survive, parameters stay undecoded."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from nnabla.utils import nnabla_pb2
from nnabla.utils.load import load as nnabla_load

from nnc_tools.formats import nnp
from nnc_tools.formats.nnp import load_project, save_project

from .conftest import needs_samples, nnabla_saved, nnc_samples, parameters_equal


def roundtrip(src: Path, dst: Path, **kwargs):
    first = load_project(src)
    save_project(first, dst, **kwargs)
    second = load_project(dst)
    assert second.proto == first.proto
    assert parameters_equal(first.parameters, second.parameters)
    return first, second


@pytest.mark.parametrize("parameter_format", [".h5", ".protobuf"])
def test_nnabla_nnp_roundtrip(tmp_path, parameter_format):
    src = nnabla_saved(tmp_path / "a.nnp", parameter_format=parameter_format)
    first, second = roundtrip(src, tmp_path / "b.nnp")
    assert len(first.parameters) == 8
    assert [n.name for n in first.proto.network] == ["Main", "MainValidation", "MainRuntime"]
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(tmp_path / "b.nnp") as b:
        assert a.namelist() == b.namelist()


@pytest.mark.parametrize("ext", [".nntxt", ".protobuf"])
def test_nnabla_inline_parameter_files_roundtrip(tmp_path, ext):
    src = nnabla_saved(tmp_path / f"a{ext}", include_params=True)
    first, _ = roundtrip(src, tmp_path / f"b{ext}")
    assert len(first.parameters) == 8
    assert not first.proto.parameter  # parameters live beside the proto in memory


def test_every_conversion_keeps_proto_and_parameter_bytes(tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    original = load_project(src)
    chain = ["b.nntxt", "c.protobuf", "d.prototxt", "e.nnp"]
    previous = src
    for name in chain:
        save_project(load_project(previous), tmp_path / name)
        again = load_project(tmp_path / name)
        assert again.proto == original.proto, name
        assert parameters_equal(original.parameters, again.parameters), name
        previous = tmp_path / name
    assert (tmp_path / "b.h5").is_file() and (tmp_path / "d.h5").is_file()


def test_text_output_with_protobuf_parameters_beside_it(tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    written = save_project(load_project(src), tmp_path / "b.nntxt", parameter_format=".protobuf")
    assert written == [tmp_path / "b.nntxt", tmp_path / "b.protobuf"]
    again = load_project(tmp_path / "b.nntxt")
    assert again.parameter_sources == [str(tmp_path / "b.protobuf")]
    assert parameters_equal(load_project(src).parameters, again.parameters)


@pytest.mark.parametrize("dst", ["out.nnp", "out.nntxt", "out.protobuf"])
def test_nnablas_loader_reads_what_we_write(tmp_path, dst):
    src = nnabla_saved(tmp_path / "a.nnp")
    project = load_project(src)
    save_project(project, tmp_path / dst, parameter_format="inline" if dst.endswith(".nntxt") else None)
    info = nnabla_load([str(tmp_path / dst)])
    assert set(info.networks) == {"Main", "MainValidation", "MainRuntime"}
    assert "Optimizer" in info.optimizers
    import nnabla as nn

    for name, p in project.parameters.items():
        assert np.array_equal(nn.get_parameters(grad_only=False)[name].d, p.data), name


@needs_samples
@pytest.mark.parametrize("sample", nnc_samples("*.prototxt"), ids=lambda p: p.name)
@pytest.mark.parametrize("dst", ["out.prototxt", "out.nnp", "out.protobuf"])
def test_nnc_converter_outputs_roundtrip(tmp_path, sample, dst):
    first, _ = roundtrip(sample, tmp_path / dst)
    assert first.proto.network and first.proto.optimizer
    reference = nnabla_pb2.NNablaProtoBuf()
    from google.protobuf import text_format

    text_format.Merge(sample.read_text(), reference)
    assert first.proto == reference


def test_explicit_and_absent_zero_multiplier_both_read_as_frozen(tmp_path):
    text = (
        'optimizer { name: "O" parameter_variable { variable_name: "a" learning_rate_multiplier: 0 } '
        'parameter_variable { variable_name: "b" } parameter_variable { variable_name: "c" learning_rate_multiplier: 0.5 } }'
    )
    (tmp_path / "m.nntxt").write_text(text)
    project = load_project(tmp_path / "m.nntxt")
    assert nnp.multipliers(project.proto.optimizer[0]) == {"a": 0.0, "b": 0.0, "c": 0.5}


def add_members(path: Path, members: dict) -> None:
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_unknown_members_are_carried_unchanged(tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    extra = {"README": b"notes\n", "Optimizer_Momentum_optimizer.h5.optimizer": bytes(range(256)) * 64, "sub/thing.bin": b"\0\1"}
    add_members(src, extra)
    project = load_project(src)
    project.proto.training_config.max_epoch = 7
    save_project(project, tmp_path / "b.nnp")
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(tmp_path / "b.nnp") as b:
        assert a.namelist() == b.namelist()
        for name in extra:
            assert b.read(name) == extra[name]
            assert b.getinfo(name).compress_type == a.getinfo(name).compress_type
    assert load_project(tmp_path / "b.nnp").proto.training_config.max_epoch == 7


def test_network_edit_never_decodes_parameters(tmp_path, monkeypatch):
    src = nnabla_saved(tmp_path / "a.nnp")

    def refuse(*args, **kwargs):
        raise AssertionError("parameters were decoded")

    monkeypatch.setattr(nnp, "decode_parameters", refuse)
    monkeypatch.setattr(nnp, "encode_parameters", refuse)
    project = load_project(src)
    project.proto.optimizer[0].parameter_variable[0].learning_rate_multiplier = 0
    save_project(project, tmp_path / "b.nnp")
    assert not project.parameters_decoded
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(tmp_path / "b.nnp") as b:
        assert a.read("parameter.h5") == b.read("parameter.h5")
        assert a.read("nnp_version.txt") == b.read("nnp_version.txt")
        assert a.read("network.nntxt") != b.read("network.nntxt")


def _data_offset(path, name):
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        info = zf.getinfo(name)
        f.seek(info.header_offset + 26)
        skip = int.from_bytes(f.read(2), "little") + int.from_bytes(f.read(2), "little")
        return info.header_offset + 30 + skip, info.compress_size


def _stored_bytes(path, name):
    """A member's bytes as they lie in the file (compressed, if it is)."""
    at, size = _data_offset(path, name)
    with open(path, "rb") as f:
        f.seek(at)
        return f.read(size)


def test_members_are_copied_as_stored_never_inflated(tmp_path, monkeypatch):
    big = tmp_path / "big.nnp"
    nnabla_saved(big)
    blob = np.random.RandomState(0).bytes(3 << 20) + bytes(3 << 20)  # deflates to about half
    add_members(big, {"blob.optimizer": blob})
    with zipfile.ZipFile(big, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("streamed.bin", "w") as f:  # written with a data descriptor (flag bit 3)
            f.write(b"abc" * 1000)
    project = load_project(big)
    project.proto.optimizer[0].parameter_variable[0].learning_rate_multiplier = 0
    real_open = zipfile.ZipFile.open

    def no_reads(self, name, mode="r", **kwargs):
        assert mode != "r", f"{name} was inflated"
        return real_open(self, name, mode, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", no_reads)
    save_project(project, tmp_path / "out.nnp")
    monkeypatch.undo()
    for name in ("blob.optimizer", "parameter.h5", "streamed.bin"):
        assert _stored_bytes(tmp_path / "out.nnp", name) == _stored_bytes(big, name)
    with zipfile.ZipFile(tmp_path / "out.nnp") as zf:
        assert zf.testzip() is None  # CRCs and sizes in the new headers are right
        assert zf.read("blob.optimizer") == blob and zf.read("streamed.bin") == b"abc" * 1000
        assert zf.getinfo("blob.optimizer").compress_type == zipfile.ZIP_DEFLATED
    # a large member's data keeps its place within a page (whole-page kernel copies); small ones are not padded
    assert _data_offset(tmp_path / "out.nnp", "blob.optimizer")[0] % 4096 == _data_offset(big, "blob.optimizer")[0] % 4096
    assert _data_offset(tmp_path / "out.nnp", "blob.optimizer")[0] != _data_offset(big, "blob.optimizer")[0]
    assert (tmp_path / "out.nnp").stat().st_size < big.stat().st_size + 2 * 4096 + 100


def test_a_member_without_its_local_header_is_one_line_and_no_output(cli, tmp_path):
    damaged = nnabla_saved(tmp_path / "d.nnp")
    data = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(damaged) as zf:
        offset = zf.getinfo("parameter.h5").header_offset
    data[offset:offset + 4] = b"XXXX"
    damaged.write_bytes(bytes(data))
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Affine]\n")
    result = cli("apply-freeze", damaged, "-c", overlay, "-o", tmp_path / "out.nnp")
    assert result.code == 2 and "d.nnp" in result.err and "damaged" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "out.nnp").exists()


def test_text_project_picks_up_sidecar_parameters(tmp_path):
    src = nnabla_saved(tmp_path / "a.nnp")
    save_project(load_project(src), tmp_path / "b.nntxt")
    assert (tmp_path / "b.h5").is_file()
    assert parameters_equal(load_project(src).parameters, load_project(tmp_path / "b.nntxt").parameters)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    src = nnabla_saved(tmp_path / "a.nnp")
    project = load_project(src)
    out = tmp_path / "out"
    out.mkdir()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nnp, "encode_parameters", boom)
    with pytest.raises(RuntimeError):
        save_project(project, out / "b.nntxt")
    assert list(out.iterdir()) == []


def test_project_files_are_read_without_starting_the_engine(tmp_path):
    """apply-freeze and friends never load NNabla's core; a later `import nnabla` (train) still works alongside."""
    import subprocess
    import sys

    src = nnabla_saved(tmp_path / "a.nnp")
    script = f"""
import sys
from nnc_tools.project.freeze import apply_freeze
from nnc_tools.formats.nnp import load_project, save_project
p = load_project({str(src)!r})
p.proto.training_config.max_epoch = 3
save_project(p, {str(tmp_path / "b.nnp")!r})
assert not {{"nnabla", "h5py", "numpy"}} & set(sys.modules), "the engine (or numpy) was loaded"
import nnabla
from nnabla.utils import nnabla_pb2
from nnabla.utils.load import load
theirs = nnabla_pb2.NNablaProtoBuf()
theirs.CopyFrom(load_project({str(tmp_path / "b.nnp")!r}).proto)
assert theirs.training_config.max_epoch == 3
info = load([{str(tmp_path / "b.nnp")!r}], prepare_data_iterator=False)
assert info.networks
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def _freeze_overlay(tmp_path) -> Path:
    overlay = tmp_path / "o.yaml"
    overlay.write_text("freeze: [Affine]\n")
    return overlay


def test_apply_freeze_copies_an_nnp_while_it_reads_the_network(tmp_path, monkeypatch):
    """The members apply-freeze keeps are copied into the output's temporary file before the network is even read;
    the output then lists the source's members in the source's order, the kept ones byte for byte, and NNabla loads it."""
    import time

    from nnc_tools.project.freeze import apply_freeze

    src = nnabla_saved(tmp_path / "a.nnp")
    blob = np.random.RandomState(1).bytes(6 << 20)
    add_members(src, {"blob.bin": blob})
    real_load = nnp.load_project
    seen = []

    def load_when_copied(path, *args, **kwargs):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen[:] = [p.stat().st_size for p in tmp_path.glob(".out.nnp.*.tmp")]
            if seen and seen[0] > len(blob) // 2:  # stored deflated: about the size of random bytes
                break
            time.sleep(0.01)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(nnp, "load_project", load_when_copied)
    result = apply_freeze(src, _freeze_overlay(tmp_path), tmp_path / "out.nnp")
    monkeypatch.undo()
    assert seen and seen[0] > len(blob) // 2, "nothing was copied before the network was read"
    assert result.output == tmp_path / "out.nnp" and any(c.changed for c in result.changes)
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(tmp_path / "out.nnp") as b:
        assert a.namelist() == b.namelist() and b.testzip() is None
        for name in a.namelist():
            if not name.endswith(".nntxt"):
                assert _stored_bytes(tmp_path / "out.nnp", name) == _stored_bytes(src, name), name
    assert nnp.multipliers(load_project(tmp_path / "out.nnp").proto.optimizer[0])["Affine/affine/W"] == 0
    assert nnabla_load([str(tmp_path / "out.nnp")], prepare_data_iterator=False).networks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nnp", "o.yaml", "out.nnp"]


@pytest.mark.parametrize("case", ["bad overlay", "nothing to change in place", "dry run"])
def test_a_copy_ahead_that_is_not_used_leaves_nothing(tmp_path, cli, case):
    src = nnabla_saved(tmp_path / "a.nnp")
    add_members(src, {"blob.bin": np.random.RandomState(1).bytes(4 << 20)})
    overlay = _freeze_overlay(tmp_path)
    if case == "bad overlay":
        overlay.write_text("freeze: [NoSuchLayer]\n")
        result = cli("apply-freeze", src, "-c", overlay, "-o", tmp_path / "out.nnp")
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    else:
        assert cli("apply-freeze", src, "-c", overlay).code == 0  # in place: now frozen
    before = src.read_bytes()
    if case != "bad overlay":
        args = ["--dry-run"] if case == "dry run" else []
        result = cli("apply-freeze", src, "-c", overlay, *args)
        assert result.code == 0 and "wrote" not in result.out
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nnp", "o.yaml"]


def test_apply_freeze_into_a_new_folder_makes_it_only_on_success(tmp_path, cli):
    src = nnabla_saved(tmp_path / "a.nnp")
    overlay = _freeze_overlay(tmp_path)
    overlay.write_text("freeze: [NoSuchLayer]\n")
    assert cli("apply-freeze", src, "-c", overlay, "-o", tmp_path / "new" / "out.nnp").code == 2
    assert not (tmp_path / "new").exists()
    overlay.write_text("freeze: [Affine]\n")
    assert cli("apply-freeze", src, "-c", overlay, "-o", tmp_path / "new" / "out.nnp").code == 0
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["out.nnp"]


def test_inline_parameters_are_read_fast_and_exactly(tmp_path):
    """A text project with its parameters inline: the blocks read with numpy give the bits protobuf's own text parser
    gives (info took 36 s on 83 MB of them; it takes seconds), and a layout the fast reader does not know falls back."""
    from google.protobuf import text_format

    from nnc_tools.formats.parameters import split_inline_parameters, take_inline_parameters

    src = nnabla_saved(tmp_path / "p.nnp")
    save_project(load_project(src), tmp_path / "inline.nntxt", parameter_format="inline")
    text = (tmp_path / "inline.nntxt").read_text()
    slow = nnabla_pb2.NNablaProtoBuf()
    text_format.Merge(text, slow)
    expected = take_inline_parameters(slow)
    rest, fast = split_inline_parameters(text)
    assert fast is not None and "parameter {" not in rest and list(fast) == list(expected)
    for name in expected:
        assert fast[name].data.tobytes() == expected[name].data.tobytes() and fast[name].need_grad == expected[name].need_grad
    assert parameters_equal(load_project(tmp_path / "inline.nntxt").parameters, load_project(src).parameters)
    odd = text.replace("  need_grad: true", "  need_grad: true\n  # a comment", 1)
    assert split_inline_parameters(odd) == (odd, None)


def test_project_text_writes_every_field_of_a_functions_param():
    """NNC's import_nntxt reads a missing field as its catalogue's default: proto3 text leaves ``val: 0`` out, and
    NNC's MulScalar(0) came back as MulScalar(1) (03_attention, checked with NNC's importer); every scalar field of a
    function's *_param is written, and the text still reads back as the same message."""
    from google.protobuf import text_format
    from nnabla.utils import nnabla_pb2

    from nnc_tools.formats.nnp import network_text

    proto = nnabla_pb2.NNablaProtoBuf()
    net = proto.network.add(name="Main")
    net.function.add(name="Scale", type="MulScalar", input=["x"], output=["y"]).mul_scalar_param.SetInParent()
    f = net.function.add(name="Drop", type="Dropout", input=["y"], output=["z"])
    f.dropout_param.seed = -1
    f = net.function.add(name="Pool", type="MaxPooling", input=["z"], output=["p"])
    f.max_pooling_param.kernel.dim.extend([2, 2])
    text = network_text(proto)
    assert "mul_scalar_param {\n      val: 0\n      inplace: false\n    }" in text
    assert "p: 0" in text and "seed: -1" in text and "ignore_border: false" in text and "dim: 2" in text
    again = nnabla_pb2.NNablaProtoBuf()
    text_format.Merge(text, again)
    assert again == proto
