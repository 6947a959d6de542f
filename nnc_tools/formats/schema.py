"""NNabla's project schema (the classes of ``nnabla.utils.nnabla_pb2``) without starting the engine.

``from nnabla.utils import nnabla_pb2`` first runs ``nnabla/__init__``, which loads the C++ core, its CPU extension, h5py
and numpy (about 0.2 s) before a single byte of a project is read, so every ``apply-freeze`` or ``info`` would pay for an
engine it never uses. The format modules therefore run NNabla's own generated module from its file as a private copy.
It is not registered under NNabla's name (NNabla's ``__init__`` imports that name through its parent packages, and must
find it absent); a later ``import nnabla`` loads NNabla's copy as usual. Both register the same schema in protobuf's
pool, which the C++ implementation accepts and shares (same descriptors: ``CopyFrom`` works across the two); with the
pure-Python implementation, or once NNabla is loaded, this is the ordinary import."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from typing import Optional, Union

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from ..errors import NncToolsError


def _load_schema():
    from google.protobuf.internal import api_implementation

    spec = importlib.util.find_spec("nnabla") if "nnabla" not in sys.modules else None
    path = Path(next(iter(spec.submodule_search_locations))) / "utils" / "nnabla_pb2.py" if spec else None
    if path is None or not path.is_file() or api_implementation.Type() == "python":
        from nnabla.utils import nnabla_pb2

        return nnabla_pb2
    module_spec = importlib.util.spec_from_file_location("nnc_tools.formats._nnabla_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


nnabla_pb2 = _load_schema()

# The solvers' learning-rate field in their ``*_param`` message: ``lr`` (Sgd, Momentum, Adagrad …), ``alpha`` (Adam, AdaBound …)
# or ``eta`` (Adadelta, Rmsprop's centred form …), in the order NNabla's own loader looks for them.
LEARNING_RATE_FIELDS = ("lr", "alpha", "eta")


FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32: below it a multiplier loses its precision or becomes 0


def as_float32(value: float) -> float:
    """``value`` as the proto stores it: ``learning_rate_multiplier`` is a float32 (0.3 reads back 0.30000001192…)."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def learning_rate_field(param) -> Optional[str]:
    """The name of the learning-rate field in a solver's parameter message (or its keyword arguments), if it has one."""
    names = param.DESCRIPTOR.fields_by_name if hasattr(param, "DESCRIPTOR") else param
    return next((k for k in LEARNING_RATE_FIELDS if k in names), None)


def decode_text(raw: bytes, where: Union[str, Path]) -> str:
    """Project text as NNabla reads it: UTF-8, a BOM allowed; one line naming ``where`` when it is not."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NncToolsError(where, f"network text is not UTF-8 (byte {e.start})") from None


def merge_text(proto, raw: bytes, where: Union[str, Path]) -> None:
    """Parse protobuf text (UTF-8, a BOM allowed) into ``proto``; one line naming ``where`` when it is not."""
    text = decode_text(raw, where)
    try:
        text_format.Merge(text, proto)
    except text_format.ParseError as e:
        raise NncToolsError(where, f"malformed protobuf text format: {e}") from None


def merge_binary(proto, raw: bytes, where: Union[str, Path]) -> None:
    """Parse binary protobuf into ``proto``; one line naming ``where`` when it is not."""
    import warnings

    try:
        with warnings.catch_warnings(record=True) as warned:  # "Unexpected end-group tag": the C++ parser stops early
            warnings.simplefilter("always")
            read = proto.MergeFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise NncToolsError(where, f"malformed binary protobuf: {e}") from None
    if warned:
        raise NncToolsError(where, f"malformed binary protobuf: {warned[0].message}")
    if raw and (read != len(raw) or not proto.ListFields() or len(proto.UnknownFields())):
        # random bytes often parse as a message of unknown fields only: nothing an NNabla file holds
        raise NncToolsError(where, "not an NNabla protobuf (no network, parameter or other field NNabla writes)")


def network_of(proto: nnabla_pb2.NNablaProtoBuf, name: str) -> Optional[nnabla_pb2.Network]:
    """The network called ``name`` in a project, or None."""
    return next((n for n in proto.network if n.name == name), None)


def executor_classes(proto) -> int:
    """The class count the first executor's output scores (its last axis), 0 where the project does not say."""
    if not proto.executor or not proto.executor[0].output_variable:
        return 0
    ex = proto.executor[0]
    network = network_of(proto, ex.network_name)
    shapes = {v.name: list(v.shape.dim) for v in network.variable} if network is not None else {}
    shape = shapes.get(ex.output_variable[0].variable_name) or [0]
    return max(int(shape[-1]), 0)


def explicit_fields(message, indent: int, as_one_line: bool) -> Optional[str]:
    """``text_format``'s ``message_formatter`` for a function's ``*_param``: every scalar field written, 0 and false
    too. Proto3 text leaves them out, and NNC's importer (``import_nntxt``) reads a missing field as its layer
    catalogue's default: a MulScalar's ``val: 0`` came back as 1.0, a Batch Normalization's ``batch_stat: false`` as
    True, a Dropout's ``p: 0`` as 0.5 (as NNC's converter does, which writes every field)."""
    descriptor = message.DESCRIPTOR
    if as_one_line or not descriptor.name.endswith("Parameter") or descriptor.file.name != "nnabla.proto":
        return None
    present = {field.name for field, _ in message.ListFields()}
    lines = text_format.MessageToString(message).splitlines() + [
        f"{field.name}: {'false' if field.type == field.TYPE_BOOL else chr(34) * 2 if field.type == field.TYPE_STRING else 0}"
        for field in descriptor.fields
        if field.name not in present and field.label != field.LABEL_REPEATED and field.message_type is None]
    return ("\n" + " " * indent).join(lines) if lines else None
