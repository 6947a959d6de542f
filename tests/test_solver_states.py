"""Projects saved by NNabla with their solver states, frozen: the frozen parameters' states are taken out (NNabla's loader
refuses states for parameters outside the solver), every other state kept as it was."""

from __future__ import annotations

import io
import zipfile

import h5py
import nnabla as nn
import numpy as np
import pytest
from nnabla.utils.load import load as nnabla_load

from nnc_tools.formats.nnp import load_project
from nnc_tools.project.freeze import apply_freeze

from .conftest import nnabla_saved


def loads(path) -> bool:
    nn.clear_parameters()
    nnabla_load([str(path)], prepare_data_iterator=False)
    return True


def states(path):
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".optimizer"))
        with h5py.File(io.BytesIO(zf.read(name)), "r") as h5:
            out = {}
            h5.visititems(lambda k, v: out.__setitem__(k, np.array(v)) if isinstance(v, h5py.Dataset) else None)
    return out


def test_a_frozen_nnp_with_solver_states_still_loads(tmp_path):
    source = nnabla_saved(tmp_path / "s.nnp", include_solver_state=True)
    (tmp_path / "o.yaml").write_text("freeze: [Convolution]\n")
    apply_freeze(source, tmp_path / "o.yaml", tmp_path / "f.nnp")
    assert loads(tmp_path / "f.nnp")
    before, after = states(source), states(tmp_path / "f.nnp")
    assert not any(k.startswith("Convolution/") for k in after)
    assert {k: v.tobytes() for k, v in after.items()} == {k: v.tobytes() for k, v in before.items()
                                                           if not k.startswith("Convolution/")}
    # and unfreezing it again gives a project that loads too (the solver starts that parameter's state afresh)
    (tmp_path / "u.yaml").write_text("lr_multiplier: {Convolution: 1}\n")
    apply_freeze(tmp_path / "f.nnp", tmp_path / "u.yaml")
    assert loads(tmp_path / "f.nnp")


@pytest.mark.parametrize("ext", [".nntxt", ".protobuf"])
def test_a_frozen_project_text_with_solver_states_still_loads(tmp_path, ext):
    source = nnabla_saved(tmp_path / f"s{ext}", include_solver_state=True)
    assert any(o.solver.states for o in load_project(source).proto.optimizer)
    (tmp_path / "o.yaml").write_text("freeze: [Affine]\n")
    out = tmp_path / f"f{ext}"
    apply_freeze(source, tmp_path / "o.yaml", out)
    kept = set(load_project(out).proto.optimizer[0].solver.states)
    assert kept and not any(k.startswith("Affine/") for k in kept)
    assert loads(out)
