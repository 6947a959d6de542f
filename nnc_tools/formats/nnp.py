"""NNabla project files: ``.nnp`` (zip), ``.nntxt``/``.prototxt`` (text), ``.protobuf`` (binary), parameters in ``.h5``/``.protobuf``.

A :class:`Project` is the ``NNablaProtoBuf`` message without parameter data, plus the parameters, decoded lazily:
nothing reads parameter data until ``project.parameters`` is used, so an edit of an ``.nnp``'s network text copies
every other member byte for byte. No computation graph is built.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from google.protobuf import text_format

from ..errors import NncToolsError, about
from ..fileio import PathLike, atomic_outputs, same_file
from .naming import PROJECT_EXTS, SDCPROJ_EXT, TEXT_EXTS
from .nnp_zip import MAX_MEMBER_BYTES, MAX_TEXT_BYTES, NNP_VERSION, CopyAhead, copy_members, member_role, new_info, open_nnp
from .parameters import (
    Parameters,
    check_parameter_shapes,
    decode_parameters,
    encode_parameters,
    existing_file,
    load_parameters,
    read_bytes,
    split_inline_parameters,
    take_inline_parameters,
    with_parameters,
)
from .schema import decode_text, explicit_fields, learning_rate_field, merge_binary, merge_text, nnabla_pb2


@dataclass
class NnpMember:
    """A member of the ``.nnp`` a project was read from, in archive order, with what we do with it on save."""

    name: str
    role: str  # "network" (text or binary network definition), "parameters", or "carry" (copied unchanged)


class Project:
    """An NNabla project: the proto (no parameter data) and its parameters, decoded on first use."""

    def __init__(
        self,
        proto: nnabla_pb2.NNablaProtoBuf,
        parameters: Optional[Parameters] = None,
        *,
        path: Optional[PathLike] = None,
        nnp_members: Sequence[NnpMember] = (),
        parameter_sources: Sequence[str] = (),
        parameter_loader: Optional[Callable[[], Parameters]] = None,
    ):
        self.proto = proto
        self.path = None if path is None else Path(path)
        self.nnp_members = list(nnp_members)
        self.parameter_sources = list(parameter_sources)
        self._parameters = parameters
        self._parameter_loader = parameter_loader
        self.member_bytes: Dict[str, bytes] = {}  # .nnp members written with these bytes instead of as stored
        if parameters is None and parameter_loader is None:
            self._parameters = OrderedDict()

    @property
    def parameters_decoded(self) -> bool:
        """False while the parameters still sit undecoded in the source file."""
        return self._parameters is not None

    @property
    def parameters(self) -> Parameters:
        if self._parameters is None:
            self._parameters = self._parameter_loader()
        return self._parameters

    @parameters.setter
    def parameters(self, value: Parameters) -> None:
        self._parameters = OrderedDict(value)


# ---------------------------------------------------------------------------------------------------------------- load


RESULTS = "results.nnp"  # what nnabla_cli, NNC's runner and nnc-tl train save as a run's best


def project_file(path: PathLike) -> Path:
    """Where a project is expected, a run's result folder stands for its ``results.nnp`` (as nnabla_cli users pass
    result folders around)."""
    path = Path(path)
    if path.is_dir():
        if not (path / RESULTS).is_file():
            raise NncToolsError(path, f"is a folder without {RESULTS}: give a project file or a training run's result folder")
        return path / RESULTS
    return path


def load_project(path: PathLike, parameter_files: Sequence[PathLike] = ()) -> Project:
    """Read a project file; ``parameter_files`` (``.h5``/``.protobuf``, or another project such as a ``results.nnp``)
    add parameters.

    A text project with no parameter file given takes ``<stem>.h5`` or ``<stem>.protobuf`` beside it when present.
    """
    path = Path(path)
    try:
        return _load_project(path, parameter_files)
    except NncToolsError as e:
        raise about(path, e) from None


def _load_project(path: Path, parameter_files: Sequence[PathLike]) -> Project:
    if path.suffix.lower() == SDCPROJ_EXT:  # NNC's project: compiled as NNC's converter would, with its *.File weights
        from .sdc_files import compiled_with_weights

        proto, params, sources = compiled_with_weights(path, lambda results: load_project(results).parameters)
        project = Project(proto, params, path=path, parameter_sources=sources)
    elif existing_file(path, PROJECT_EXTS, "project file", f"one of {', '.join(PROJECT_EXTS)}") == ".nnp":
        project = _load_nnp(path)
    else:
        project = _load_proto_file(path)
        if path.suffix.lower() in TEXT_EXTS and not parameter_files:
            parameter_files = [p for p in (path.with_suffix(".h5"), path.with_suffix(".protobuf")) if p.is_file()][:1]
    if parameter_files:
        extra = OrderedDict(project.parameters)
        for parameter_file in parameter_files:  # a parameter file, or any project: its parameters
            is_project = Path(parameter_file).suffix.lower() in PROJECT_EXTS and Path(parameter_file).suffix.lower() != ".protobuf"
            loaded = load_project(parameter_file).parameters if is_project else load_parameters(parameter_file)
            check_parameter_shapes(project.proto, loaded, parameter_file, path)
            extra.update(loaded)
            project.parameter_sources.append(str(parameter_file))
        project.parameters = extra
    return project


def _load_proto_file(path: Path) -> Project:
    """A ``.nntxt``/``.prototxt`` (parameters inline or not) or ``.protobuf`` project."""
    proto = nnabla_pb2.NNablaProtoBuf()
    fast = None
    if path.suffix.lower() in TEXT_EXTS:
        text, fast = split_inline_parameters(decode_text(read_bytes(path), path))
        merge_text(proto, text.encode("utf-8"), path)
    else:
        merge_binary(proto, read_bytes(path), path)
    inline = take_inline_parameters(proto) if fast is None else fast
    return Project(proto, inline, path=path, parameter_sources=[str(path)] if inline else [])


# -------------------------------------------------------------------------------------------------------------- .nnp


def _read_member(zf: zipfile.ZipFile, path: Path, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise NncToolsError(path, f"member '{info.filename}' is {info.file_size} bytes, over the {limit}-byte bound")
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError) as e:
        raise NncToolsError(path, f"member '{info.filename}' is damaged: {e}") from None
    except Exception as e:  # zlib.error and friends from a corrupt stream
        if type(e).__module__ in ("zlib", "bz2", "lzma", "_lzma"):
            raise NncToolsError(path, f"member '{info.filename}' is damaged: {e}") from None
        raise
    if len(data) > limit:
        raise NncToolsError(path, f"member '{info.filename}' inflates past the {limit}-byte bound")
    return data


def _load_nnp(path: Path) -> Project:
    proto = nnabla_pb2.NNablaProtoBuf()
    members: List[NnpMember] = []
    inline = OrderedDict()
    with open_nnp(path) as zf:
        for info in zf.infolist():
            role = member_role(info)
            members.append(NnpMember(info.filename, role))
            if role == "network":
                raw = _read_member(zf, path, info, MAX_TEXT_BYTES)
                where = f"{path}!{info.filename}"
                if os.path.splitext(info.filename.lower())[1] in TEXT_EXTS:
                    merge_text(proto, raw, where)
                else:
                    merge_binary(proto, raw, where)
                inline.update(take_inline_parameters(proto))
    if not any(m.role == "network" for m in members):
        raise NncToolsError(path, "no network member (.nntxt, .prototxt or .protobuf) in the archive")
    param_names = [m.name for m in members if m.role == "parameters"]
    sources = [f"{path}!{name}" for name in param_names]

    def load_nnp_parameters() -> Parameters:
        params = OrderedDict(inline)
        with open_nnp(path) as zf:
            for name in param_names:
                info = zf.getinfo(name)
                raw = _read_member(zf, path, info, MAX_MEMBER_BYTES)
                params.update(decode_parameters(raw, os.path.splitext(name.lower())[1], f"{path}!{name}"))
        return params

    return Project(
        proto,
        None if param_names else inline,
        path=path,
        nnp_members=members,
        parameter_sources=sources,
        parameter_loader=load_nnp_parameters if param_names else None,
    )


# ---------------------------------------------------------------------------------------------------------------- save


_BARE_PARAMETER_VARIABLE = re.compile(r'^( *)parameter_variable \{\n( *)(variable_name: "(?:[^"\\]|\\.)*")\n\1\}$', re.M)


def network_text(proto: nnabla_pb2.NNablaProtoBuf) -> str:
    """The protobuf text of a project, as NNabla's ``save()`` prints it, except for values proto3 leaves out when they
    are 0 and NNC's importer then reads as its own default: a frozen optimizer parameter reads
    ``learning_rate_multiplier: 0`` (absent: 1.0), and every function's ``*_param`` lists all its scalar fields
    (``batch_stat: false``, a MulScalar's ``val: 0``: ``schema.explicit_fields``), as NNC's converter writes them."""
    if not proto.optimizer:
        return text_format.MessageToString(proto, message_formatter=explicit_fields)
    rest = _copy(proto)
    del rest.optimizer[:]
    optimizers = "".join(
        "optimizer {\n"
        + _BARE_PARAMETER_VARIABLE.sub(r"\1parameter_variable {\n\2\3\n\2learning_rate_multiplier: 0\n\1}",
                                       text_format.MessageToString(o, indent=2))
        + "}\n"
        for o in proto.optimizer
    )
    text = text_format.MessageToString(rest, message_formatter=explicit_fields)
    later = re.search(r"^(monitor|executor) \{$", text, re.M)  # fields numbered after optimizer (400)
    cut = later.start() if later else len(text)
    return text[:cut] + optimizers + text[cut:]


def parameter_sidecar(path: PathLike, fmt: str = ".h5") -> Path:
    """Where a text project's parameters go: ``<stem>.h5`` or ``<stem>.protobuf`` beside it."""
    return Path(path).with_suffix(fmt)


def save_project(
    project: Project,
    path: PathLike,
    *,
    parameter_format: Optional[str] = None,
    inputs: Iterable[PathLike] = (),
    replace_input: bool = False,
    ahead: Optional[CopyAhead] = None,
) -> List[Path]:
    """Write ``project`` to ``path`` (format from its extension) atomically; return the files written.

    ``.nnp``: the network text plus the parameters (kept in their source format, else ``parameter_format`` or
    ``.h5``); members of a source ``.nnp`` that we do not interpret are copied unchanged. ``.nntxt``/``.prototxt``:
    the text, with parameters in a ``<stem>.h5`` (or ``.protobuf``) beside it, or inline when ``parameter_format`` is
    ``"inline"``. ``.protobuf``: one binary message including the parameters. Refuses to write over any of ``inputs``
    or over the project's own file unless ``replace_input``; a text project replaced in place keeps its parameters
    where they were (inline stays inline, a parameter file beside it is left alone). ``ahead``: the unchanged members,
    already being copied into a file beside ``path`` (``nnp_zip.CopyAhead``; used when they are the ones to copy).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in PROJECT_EXTS:
        raise NncToolsError(path, f"unknown output extension '{path.suffix}' (expected one of {', '.join(PROJECT_EXTS)})")
    if parameter_format not in (None, ".h5", ".protobuf", "inline"):
        raise NncToolsError(path, f"unknown parameter format '{parameter_format}' (expected .h5, .protobuf or inline)")

    sources = [project.path] if project.path and not replace_input else []
    sources += [Path(s) for s in project.parameter_sources if "!" not in s and not (project.path and s == str(project.path))]
    sources += [Path(p) for p in inputs]

    if replace_input and ext in TEXT_EXTS and parameter_format is None and project.path and same_file(path, project.path):
        inline = str(project.path) in project.parameter_sources
        parameter_format = "inline" if inline else "none"

    if ext == ".nnp":
        targets = [path]
    elif ext == ".protobuf" or parameter_format in ("inline", "none") or not project.parameters:
        targets = [path]
    else:
        targets = [path, parameter_sidecar(path, parameter_format or ".h5")]
    for target in targets:
        for source in sources:
            if target.exists() and same_file(target, source):
                raise NncToolsError(target, "is an input of this command; refusing to overwrite it (choose another output)")

    with atomic_outputs(targets, made=[ahead.temp] if ext == ".nnp" and ahead is not None and ahead.temp else []) as temps:
        if ext == ".nnp":
            _write_nnp(project, temps[0], parameter_format, ahead)
        elif ext == ".protobuf" or parameter_format == "inline":
            proto = with_parameters(_copy(project.proto), project.parameters)
            if ext == ".protobuf":
                temps[0].write_bytes(proto.SerializeToString())
            else:
                temps[0].write_text(network_text(proto), encoding="utf-8")
        else:
            temps[0].write_text(network_text(project.proto), encoding="utf-8")
            if len(temps) > 1 and parameter_format != "none":
                temps[1].write_bytes(encode_parameters(project.parameters, targets[1].suffix.lower()))
    return targets


def _copy(proto: nnabla_pb2.NNablaProtoBuf) -> nnabla_pb2.NNablaProtoBuf:
    out = nnabla_pb2.NNablaProtoBuf()
    out.CopyFrom(proto)
    return out


def _write_new_nnp(project: Project, target: Path, text: bytes, params_fmt: Optional[str]) -> None:
    """An .nnp made from nothing: version, network text, parameters."""
    with zipfile.ZipFile(target, "w", allowZip64=True) as zout:
        zout.writestr(new_info("nnp_version.txt", zipfile.ZIP_STORED), NNP_VERSION)
        zout.writestr(new_info("network.nntxt", zipfile.ZIP_DEFLATED), text)
        if project.parameters:
            fmt = params_fmt or ".h5"
            zout.writestr(new_info(f"parameter{fmt}", zipfile.ZIP_STORED), encode_parameters(project.parameters, fmt))


def _write_nnp(project: Project, target: Path, parameter_format: Optional[str], ahead: Optional[CopyAhead]) -> None:
    """The members copied as stored come first (possibly copied ahead, see ``CopyAhead``), the network text and any
    re-encoded parameters after them; the central directory lists the members in the source's order."""
    text = network_text(project.proto).encode("utf-8")
    params_fmt = None if parameter_format in (None, "inline") else parameter_format

    def as_stored(member: NnpMember) -> bool:
        ext = os.path.splitext(member.name.lower())[1]
        if member.name in project.member_bytes:
            return False
        return member.role == "carry" or (member.role == "parameters" and not project.parameters_decoded
                                          and params_fmt in (None, ext))

    raw = [m.name for m in project.nnp_members if as_stored(m)]
    # None (and the copy's file gone) unless it copied exactly these members of this project's file
    zout = ahead.adopt(project.path, raw) if ahead is not None else None
    if not project.nnp_members:
        return _write_new_nnp(project, target, text, params_fmt)
    with open_nnp(project.path) as zin:
        if zout is None:
            zout = zipfile.ZipFile(target, "w", allowZip64=True)
            try:
                copy_members(zin, raw, zout)
            except BaseException:
                zout.close()
                raise
        with zout:
            copied = {info.filename: info for info in zout.filelist}
            order = []
            network_done = params_done = False
            for member in project.nnp_members:
                info = zin.getinfo(member.name)
                if member.name in copied:
                    order.append(copied[member.name])
                    params_done = params_done or member.role == "parameters"
                elif member.name in project.member_bytes:
                    zout.writestr(new_info(member.name, info.compress_type, info), project.member_bytes[member.name])
                    order.append(zout.filelist[-1])
                elif member.role == "network" and not network_done:
                    name = member.name if os.path.splitext(member.name.lower())[1] in TEXT_EXTS else "network.nntxt"
                    zout.writestr(new_info(name, info.compress_type, info), text)
                    order.append(zout.filelist[-1])
                    network_done = True
                elif member.role == "parameters" and not params_done and project.parameters:
                    ext = os.path.splitext(member.name.lower())[1]
                    fmt = params_fmt or ext
                    name = member.name if fmt == ext else f"parameter{fmt}"
                    zout.writestr(new_info(name, info.compress_type, info), encode_parameters(project.parameters, fmt))
                    order.append(zout.filelist[-1])
                    params_done = True
            if not params_done and project.parameters:
                fmt = params_fmt or ".h5"
                zout.writestr(new_info(f"parameter{fmt}", zipfile.ZIP_STORED), encode_parameters(project.parameters, fmt))
                order.append(zout.filelist[-1])
            zout.filelist[:] = order


def solver_learning_rate(solver: nnabla_pb2.Solver) -> Optional[float]:
    """The base learning rate of a solver (``lr``, ``alpha`` or ``eta`` in its ``*_param``), if it has one."""
    which = solver.WhichOneof("parameter")
    if which is None:
        return None
    field = learning_rate_field(getattr(solver, which))
    return None if field is None else float(getattr(getattr(solver, which), field))


def multipliers(optimizer: nnabla_pb2.Optimizer) -> Dict[str, float]:
    """An optimizer's learning-rate multiplier per parameter; an absent value reads as 0 (frozen), as proto3 prints it."""
    return {pv.variable_name: float(pv.learning_rate_multiplier) for pv in optimizer.parameter_variable}
