"""Parameter arrays as NNabla stores them: ``.h5`` (one dataset per parameter, attributes ``need_grad`` and ``index``),
``.protobuf`` or inline ``parameter`` entries of a project. numpy and h5py are imported only where arrays are decoded or
encoded, so an edit of a network's text never pays for them."""

from __future__ import annotations

import io
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

from ..errors import NncToolsError
from ..fileio import PathLike
from .naming import PARAMETER_EXTS, repeat_expansions
from .schema import merge_binary, nnabla_pb2

if TYPE_CHECKING:
    import numpy as np

Parameters = "OrderedDict[str, Parameter]"


@dataclass
class Parameter:
    """One parameter array as stored, with NNabla's ``need_grad`` flag."""

    name: str
    data: np.ndarray
    need_grad: bool = True


def load_parameters(path: PathLike) -> Parameters:
    """Read a parameter file (``.h5`` as NNabla saves it, or a ``.protobuf`` holding ``parameter`` entries)."""
    path = Path(path)
    ext = existing_file(path, PARAMETER_EXTS, "parameter file", ".h5 or .protobuf")
    return decode_parameters(read_bytes(path), ext, str(path))


def existing_file(path: Path, extensions, kind: str, expected: str) -> str:
    """The file's lower-case extension, once it is one of ``extensions`` and the file exists (else one line)."""
    ext = path.suffix.lower()
    if ext not in extensions:
        raise NncToolsError(path, f"unknown {kind} extension '{path.suffix}' (expected {expected})")
    if not path.is_file():
        raise NncToolsError(path, "no such file")
    return ext


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise NncToolsError(path, f"cannot read: {e.strerror or e}") from None


def take_inline_parameters(proto: nnabla_pb2.NNablaProtoBuf) -> Parameters:
    """Move ``proto.parameter`` entries out of the proto into a parameter dict."""
    params = OrderedDict()
    if not proto.parameter:
        return params
    import numpy as np  # numpy, like h5py, only where parameters are decoded or encoded (startup of apply-freeze)

    for p in proto.parameter:
        shape = tuple(p.shape.dim)
        data = np.array(p.data, dtype=np.float32)
        if data.size != int(np.prod(shape, dtype=np.int64)):
            raise NncToolsError(None, f"parameter {p.variable_name}: {data.size} values for shape {shape}")
        params[p.variable_name] = Parameter(p.variable_name, data.reshape(shape), bool(p.need_grad))
    del proto.parameter[:]
    return params


def decode_parameters(raw: bytes, ext: str, where: str) -> Parameters:
    if ext == ".protobuf":
        proto = nnabla_pb2.NNablaProtoBuf()
        merge_binary(proto, raw, where)
        try:
            return take_inline_parameters(proto)
        except NncToolsError as e:
            raise NncToolsError(where, e.problem) from None
    try:
        import h5py  # only where parameters are decoded: an edit of the network never pays for it

        with h5py.File(io.BytesIO(raw), "r") as h5:
            found = []
            h5.visititems(lambda name, obj: found.append((obj.attrs.get("index", 0), name)) if isinstance(obj, h5py.Dataset) else None)
            params = OrderedDict()
            for _, name in sorted(found, key=lambda item: (int(item[0]), item[1])):
                ds = h5[name]
                params[name] = Parameter(name, ds[...], bool(ds.attrs.get("need_grad", True)))
            return params
    except (OSError, KeyError, ValueError) as e:
        raise NncToolsError(where, f"not a readable HDF5 parameter file: {e}") from None


def encode_parameters(params: Parameters, fmt: str) -> bytes:
    """Serialise parameters as NNabla does: ``.h5`` (datasets with ``need_grad`` and ``index``) or ``.protobuf``."""
    if fmt == ".protobuf":
        return with_parameters(nnabla_pb2.NNablaProtoBuf(), params).SerializeToString()
    buf = io.BytesIO()
    import h5py

    with h5py.File(buf, "w") as h5:
        for index, (name, p) in enumerate(params.items()):
            h5[name] = p.data
            h5[name].attrs["need_grad"] = bool(p.need_grad)
            h5[name].attrs["index"] = index
    return buf.getvalue()


def with_parameters(proto: nnabla_pb2.NNablaProtoBuf, params: Parameters) -> nnabla_pb2.NNablaProtoBuf:
    import numpy as np

    for name, p in params.items():
        entry = proto.parameter.add()
        entry.variable_name = name
        entry.shape.dim.extend(int(d) for d in p.data.shape)
        entry.data.extend(np.asarray(p.data, dtype=np.float32).ravel().tolist())
        entry.need_grad = bool(p.need_grad)
    return proto


def check_parameter_shapes(proto, params: Parameters, source: PathLike, project: Path) -> None:
    """Every parameter a file gives that the networks declare has the declared shape (a Repeat block's per-repetition
    names checked against its block's variable): NNabla could not load the result, or a layer would take another
    network's weights."""
    declared = {v.name: [int(d) for d in v.shape.dim] for n in proto.network for v in n.variable if v.type == "Parameter"}
    repeated = {n: s for n, s in declared.items() if "{" in n}
    for name, p in params.items():
        want = declared.get(name)
        if want is None:
            want = next((s for n, s in repeated.items() if name in repeat_expansions(n, [name])), None)
        if want is not None and list(p.data.shape) != want:
            raise NncToolsError(source, f"{name} is {'x'.join(map(str, p.data.shape)) or 'a scalar'} here; {project.name} "
                                f"declares {'x'.join(map(str, want))}: parameters of another network?")


_BLOCK = re.compile(r"^parameter \{\n(.*?)^\}\n", re.S | re.M)
_NAME = re.compile(r'\A  variable_name: "((?:[^"\\]|\\.)*)"\n')


def split_inline_parameters(text: str) -> Tuple[str, Optional[Parameters]]:
    """A project text's top-level ``parameter { … }`` blocks read with numpy instead of protobuf's text parser (83 MB of
    ``data: 0.0097…`` lines take it 36 s and 560 MB), and the text without them. Only the layout protobuf and NNabla
    write (one field a line, ``variable_name``, ``shape``, ``data``…, ``need_grad``) is read so; anything else gives
    (text, None), and the caller parses it all as before."""
    if "\nparameter {" not in text and not text.startswith("parameter {"):
        return text, None
    import numpy as np

    params: Parameters = OrderedDict()
    for block in _BLOCK.finditer(text):
        body = block.group(1)
        name = _NAME.match(body)
        lines = body.splitlines()
        dims = [line.strip()[5:] for line in lines if line.startswith("    dim: ")]
        data = [line[8:] for line in lines if line.startswith("  data: ")]
        known = 1 + len(dims) + len(data) + sum(1 for line in lines if line in ("  shape {", "  }") or
                                                line.startswith("  need_grad: "))
        if name is None or known != len(lines) or "\\" in name.group(1):
            return text, None  # another layout (escapes, other fields): protobuf's parser reads it
        try:
            values = np.array(data, dtype=np.float32)
            shape = tuple(int(d) for d in dims)
        except ValueError:
            return text, None
        if values.size != int(np.prod(shape, dtype=np.int64)):
            raise NncToolsError(None, f"parameter {name.group(1)}: {values.size} values for shape {shape}")
        need_grad = "  need_grad: true" in lines
        params[name.group(1)] = Parameter(name.group(1), values.reshape(shape), need_grad)
    rest = _BLOCK.sub("", text)
    if "\nparameter {" in rest or rest.startswith("parameter {"):
        return text, None
    return rest, params
