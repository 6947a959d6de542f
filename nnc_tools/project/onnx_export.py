"""`nnc-tl export-onnx`: a trained project's executor network (NNC's ``MainRuntime``) as an ONNX model, written by NNabla's
own exporter (``nnabla.utils.converter.onnx.OnnxExporter``, which ships in ``nnabla-converter`` and needs only the
``onnx`` package: ``pip install '.[onnx]'`` and ``pip install --no-deps nnabla-converter==1.39.0``, so that the
converter's TensorFlow requirements are not pulled in)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import NncToolsError
from ..fileio import PathLike, atomic_output
from ..formats.naming import repeat_expansions
from ..formats.nnp import load_project, save_project
from ..formats.schema import network_of

log = logging.getLogger(__name__)

INSTALL = "pip install '.[onnx]' && pip install --no-deps nnabla-converter==1.39.0"
DEFAULT_OPSET = "11"


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        from nnabla.utils.converter.onnx import OnnxExporter  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class OnnxExport:
    """What was written and what the model expects: the convention a user must feed it in."""

    path: Path
    input_shape: List[int]  # per image (channels, height, width)
    raw_pixels: bool  # True: pixel values 0-255 as they are (no_image_normalization); False: divided by 255
    batch: Optional[int]  # None: dynamic (any batch, one image too)
    class_names: List[str] = field(default_factory=list)
    in_model: str = ""  # scaling the network itself does first (NNC's MulScalar/AddScalar on the input)

    def describe(self) -> str:
        scale = ("raw pixel values 0-255 (the project says no_image_normalization: true)" if self.raw_pixels else
                 "pixel values divided by 255, 0-1 (NNC's Image Normalization)")
        batch = "any batch size" if self.batch is None else f"a batch of exactly {self.batch}"
        inside = f"; the network itself then {self.in_model}" if self.in_model else ""
        return f"input: {'x'.join(map(str, self.input_shape))} per image, {scale}, {batch}{inside}"

    def metadata(self) -> Dict[str, str]:
        """What goes into the model's ``metadata_props``."""
        return {"input_scale": "0-255" if self.raw_pixels else "0-1 (pixels / 255)",
                "input_shape": ",".join(["N" if self.batch is None else str(self.batch)] + [str(d) for d in self.input_shape]),
                "no_image_normalization": str(self.raw_pixels).lower(), "preprocessing_in_model": self.in_model or "none",
                "class_names": json.dumps(self.class_names), "exported_by": "nnc-tl"}


def export_onnx(project: PathLike, output: PathLike, batch_size: Optional[int] = None, executor: Optional[str] = None,
                opset: str = DEFAULT_OPSET, class_names: Optional[List[str]] = None) -> OnnxExport:
    """Write ``output`` (.onnx): the project's executor network (the first, or ``executor``) with its parameters, its
    batch dynamic (or fixed at ``batch_size``), and in its metadata the input convention (pixel scale, shape), class
    names and the scaling the network does itself. A project without stored parameters is refused: the model would
    carry random weights."""
    project, output = Path(project), Path(output)
    if output.suffix.lower() != ".onnx":
        raise NncToolsError(output, "export-onnx writes an .onnx file")
    if not onnx_available():
        raise NncToolsError(None, f"ONNX export needs the onnx package and NNabla's exporter: {INSTALL}")
    loaded = load_project(project)  # one line for a file that is no project, before NNabla's importer sees it
    proto = loaded.proto
    if not proto.executor:
        raise NncToolsError(project, "has no executor (NNC's MainRuntime) to export")
    names = [e.name for e in proto.executor]
    if executor is not None and executor not in names:
        raise NncToolsError(project, f"no executor {executor!r} (it has {', '.join(names)})")
    index = names.index(executor) if executor is not None else 0
    _check_parameters(loaded, proto, index, project)
    from nnabla.utils.converter.nnabla import NnpImporter

    with contextlib.ExitStack() as stack:
        source = project  # NNabla's importer reads an .nnp whole; a text project's parameter file or an .sdcproj's
        if project.suffix.lower() != ".nnp":  # weight references it would not see, and it makes random weights up
            source = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nnc-tl-onnx-"))) / "project.nnp"
            save_project(loaded, source)
        with contextlib.redirect_stdout(io.StringIO()) as said:  # NNabla's importer prints its progress
            nnp = NnpImporter(str(source), expand_network=True, executor_index=index).execute()
    log.debug(said.getvalue().strip())
    network = network_of(nnp.protobuf, proto.executor[index].network_name) or nnp.protobuf.network[0]
    ex = proto.executor[index]
    result = OnnxExport(output, _input_shape(proto, ex), bool(ex.no_image_normalization), batch_size, class_names or [],
                        _scaling_in_model(network_of(proto, ex.network_name), ex))
    exported_batch = batch_size or network.batch_size or 1
    with atomic_output(output) as temp:
        _export(nnp, exported_batch, opset, temp, project, network.name)
        _finish_model(temp, result, exported_batch, Path(output).name)
    return result


def _export(nnp, batch: int, opset: str, temp: Path, project: Path, network: str) -> None:
    from nnabla.utils.converter.onnx import OnnxExporter

    try:
        with contextlib.redirect_stdout(io.StringIO()) as said:  # NNabla's exporter prints what it leaves out
            OnnxExporter(nnp, batch, -1, opset=opset).execute(str(temp))
        log.debug(said.getvalue().strip())
    except (ValueError, KeyError, NotImplementedError, AttributeError) as e:
        raise NncToolsError(project, f"NNabla's ONNX exporter cannot export {network}: "
                            f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None


def _check_parameters(loaded, proto, index: int, project: Path) -> None:
    """The executor's parameters are stored: NNabla's exporter would otherwise write random initial values."""
    network = network_of(proto, proto.executor[index].network_name)
    wanted = [v.name for v in network.variable if v.type == "Parameter"] if network is not None else []
    missing = [n for n in wanted if n not in loaded.parameters and not repeat_expansions(n, loaded.parameters)]
    if missing:
        raise NncToolsError(project, f"holds no values for {len(missing)} of its {len(wanted)} parameters "
                            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): the model would carry random "
                            "weights (export a trained project, or give its parameter file: convert it to .nnp first)")


def _input_shape(proto, ex) -> List[int]:
    network = network_of(proto, ex.network_name)
    shapes = {v.name: [int(d) for d in v.shape.dim] for v in network.variable} if network is not None else {}
    shape = shapes.get(ex.data_variable[0].variable_name, []) if ex.data_variable else []
    return shape[1:]


def _scaling_in_model(network, ex) -> str:
    """The MulScalar/AddScalar chain the network applies to its input first (NNC's ImageNet models: x 0.01735, - 1.99)."""
    if network is None or not ex.data_variable:
        return ""
    steps, current = [], ex.data_variable[0].variable_name
    readers = {i: f for f in network.function for i in f.input}
    while current in readers and readers[current].type in ("MulScalar", "AddScalar"):
        f = readers[current]
        value = f.mul_scalar_param.val if f.type == "MulScalar" else f.add_scalar_param.val
        steps.append(f"multiplies by {value:g}" if f.type == "MulScalar" else f"adds {value:g}")
        current = f.output[0]
    return ", then ".join(steps)


def _finish_model(path: Path, result: OnnxExport, exported_batch: int, name: str) -> None:
    """The batch axis made dynamic (unless fixed) and the metadata written; a model whose batch cannot be freed (the
    exporter put it where a Reshape cannot copy it) keeps its fixed batch, and says so."""
    import onnx

    model = onnx.load(str(path))
    if result.batch is None and not make_batch_dynamic(model, exported_batch):
        result.batch = exported_batch
        log.warning(f"{name}: the batch stays fixed at {exported_batch} (NNabla's exporter wrote it into the graph)")
    del model.metadata_props[:]
    for key, value in result.metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def make_batch_dynamic(model, batch: int) -> bool:
    """The inputs' and outputs' first axis named ``N`` and every Reshape target that holds the batch told to copy it
    (``0``); False, with the model unchanged, where the batch stands anywhere else a shape is computed from."""
    import onnx
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    targets = []
    for node in model.graph.node:
        if node.op_type == "Reshape" and len(node.input) > 1:
            tensor = initializers.get(node.input[1])
            if tensor is None:
                return False
            shape = numpy_helper.to_array(tensor)
            if shape.size and shape[0] == batch:
                targets.append((tensor, shape))
        elif node.op_type in ("Expand", "Tile", "ConstantOfShape", "Constant", "Slice", "Resize"):
            return False
    for tensor, shape in targets:
        fixed = shape.copy()
        fixed[0] = 0
        tensor.CopyFrom(numpy_helper.from_array(fixed, tensor.name))
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_value == batch:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    onnx.checker.check_model(model)
    return True


def write_results_onnx(result_dir: Path, class_names: Optional[List[str]] = None) -> Optional[str]:
    """``results.onnx`` beside ``results.nnp`` (as NNC writes ``result.onnx``) when the ONNX extra is installed; a network
    NNabla's exporter cannot export is said and skipped. Returns the file's name, or None."""
    if not onnx_available():
        return None
    try:
        export_onnx(result_dir / "results.nnp", result_dir / "results.onnx", class_names=class_names)
    except NncToolsError as e:
        log.warning(f"results.onnx not written: {e}")
        return None
    return "results.onnx"
