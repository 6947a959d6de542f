"""NNabla's project schema (``nnabla.utils.nnabla_pb2``) without starting the engine.

``from nnabla.utils import nnabla_pb2`` first runs ``nnabla/__init__``, which loads the C++ core and its CPU extension
(about 0.2 s, plus h5py and numpy) before a single byte of a project is read. The format modules need only the
protobuf classes, so they load NNabla's own generated module from its file, under its own name: a later import of
``nnabla`` finds it in ``sys.modules`` and uses the same module (protobuf registers the schema once)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "nnabla.utils.nnabla_pb2"


def _load_schema():
    if _NAME in sys.modules or "nnabla" in sys.modules:
        from nnabla.utils import nnabla_pb2

        return nnabla_pb2
    spec = importlib.util.find_spec("nnabla")
    path = Path(next(iter(spec.submodule_search_locations))) / "utils" / "nnabla_pb2.py" if spec else None
    if path is None or not path.is_file():
        from nnabla.utils import nnabla_pb2  # an unusual install: the ordinary import

        return nnabla_pb2
    module_spec = importlib.util.spec_from_file_location(_NAME, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[_NAME] = module
    module_spec.loader.exec_module(module)
    return module


nnabla_pb2 = _load_schema()
