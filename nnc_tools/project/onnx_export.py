"""`nnc-tl export-onnx`: a trained project's executor network (NNC's ``MainRuntime``) as an ONNX model, written by NNabla's
own exporter (``nnabla.utils.converter.onnx.OnnxExporter``, which ships in ``nnabla-converter`` and needs only the
``onnx`` package: ``pip install '.[onnx]'`` and ``pip install --no-deps nnabla-converter==1.39.0``, so that the
converter's TensorFlow requirements are not pulled in)."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Optional

from ..errors import NncToolsError
from ..fileio import PathLike, atomic_output
from ..formats.nnp import load_project
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


def export_onnx(project: PathLike, output: PathLike, batch_size: Optional[int] = None, executor: Optional[str] = None,
                opset: str = DEFAULT_OPSET) -> Path:
    """Write ``output`` (.onnx): the project's executor network (the first, or ``executor``) with its parameters, at
    ``batch_size`` (default: the network's own)."""
    project, output = Path(project), Path(output)
    if output.suffix.lower() != ".onnx":
        raise NncToolsError(output, "export-onnx writes an .onnx file")
    if not onnx_available():
        raise NncToolsError(None, f"ONNX export needs the onnx package and NNabla's exporter: {INSTALL}")
    proto = load_project(project).proto  # one line for a file that is no project, before NNabla's importer sees it
    if not proto.executor:
        raise NncToolsError(project, "has no executor (NNC's MainRuntime) to export")
    names = [e.name for e in proto.executor]
    if executor is not None and executor not in names:
        raise NncToolsError(project, f"no executor {executor!r} (it has {', '.join(names)})")
    index = names.index(executor) if executor is not None else 0
    from nnabla.utils.converter.nnabla import NnpImporter
    from nnabla.utils.converter.onnx import OnnxExporter

    with contextlib.redirect_stdout(io.StringIO()) as said:  # NNabla's importer prints its progress
        nnp = NnpImporter(str(project), expand_network=True, executor_index=index).execute()
    log.debug(said.getvalue().strip())
    network = network_of(nnp.protobuf, proto.executor[index].network_name) or nnp.protobuf.network[0]
    batch = batch_size or network.batch_size or 1
    with atomic_output(output) as temp:
        try:
            with contextlib.redirect_stdout(io.StringIO()) as said:  # and its exporter what it leaves out
                OnnxExporter(nnp, batch, -1, opset=opset).execute(str(temp))
            log.debug(said.getvalue().strip())
        except (ValueError, KeyError, NotImplementedError, AttributeError) as e:
            raise NncToolsError(project, f"NNabla's ONNX exporter cannot export {network.name}: "
                                f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    return output


def write_results_onnx(result_dir: Path) -> Optional[str]:
    """``results.onnx`` beside ``results.nnp`` (as NNC writes ``result.onnx``) when the ONNX extra is installed; a network
    NNabla's exporter cannot export is said and skipped. Returns the file's name, or None."""
    if not onnx_available():
        return None
    try:
        export_onnx(result_dir / "results.nnp", result_dir / "results.onnx")
    except NncToolsError as e:
        log.warning(f"results.onnx not written: {e}")
        return None
    return "results.onnx"
