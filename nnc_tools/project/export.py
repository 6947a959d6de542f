"""A registered network as a complete NNC-style project: ``Main``, ``MainValidation``, ``MainRuntime``, optimizer, monitors,
executor, datasets and training config — what NNC's project importer and ``nnabla_cli train`` take as they are.

Images are normalised the NNC way: the datasets say ``no_image_normalization: false``, so the data loader divides pixel
values by 255 (NNC's "Image Normalization" checkbox); the network itself has no scaling layer.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import nnabla as nn
import nnabla.functions as F
import numpy as np
from nnabla.utils.save import create_proto

from ..data.models import resolve_source
from ..errors import NncToolsError, SettingError
from ..fileio import PathLike
from ..formats.naming import layer_of
from ..formats.nnc_csv import class_count_for, read_header_and_count
from ..formats.nnp import Project, save_project
from ..formats.parameters import Parameter, Parameters
from ..formats.schema import nnabla_pb2
from ..yamlfile import whole_number
from .networks import get_network
from .passes import dataset_uri, set_nnc_initializers, solver_proto
from .weights import copy_weights

log = logging.getLogger(__name__)

INPUT = "Input"
LOSS = "CategoricalCrossEntropy"
TARGET = f"{LOSS}_T"
OUTPUT = "Softmax"

FROZEN_BY_DEFAULT = ("mean", "var")  # Batch Normalization statistics: not trained by the solver (NNC's default 0)


@dataclass
class ExportResult:
    written: List[Path]
    network: str
    parameters: int
    classes: int = 10
    classes_from: str = "the default"  # --classes, the training CSV's header or labels, or the default
    copied: List[str] = field(default_factory=list)
    reinitialised: List[Tuple[str, str]] = field(default_factory=list)  # (parameter, why)


def _nnc_names(net: nnabla_pb2.Network, keep: Sequence[str]) -> None:
    """Rename functions and their outputs the NNC way: a parameterised function after its parameters' layer, the others
    by type (``ReLU``, ``ReLU_2`` …); a function's output variable takes the function's name."""
    parameters = {v.name for v in net.variable if v.type == "Parameter"}
    counts: Counter = Counter()
    renames: Dict[str, str] = {}
    for function in net.function:
        owned = [i for i in function.input if i in parameters]
        if owned:
            name = layer_of(owned[0])
        else:
            counts[function.type] += 1
            name = function.type if counts[function.type] == 1 else f"{function.type}_{counts[function.type]}"
        function.name = name
        if len(function.output) == 1 and function.output[0] not in keep:
            renames[function.output[0]] = name
    for var in net.variable:
        var.name = renames.get(var.name, var.name)
    for function in net.function:
        function.input[:] = [renames.get(i, i) for i in function.input]
        function.output[:] = [renames.get(o, o) for o in function.output]


def _dataset(name: str, uri: str, batch_size: int, shuffle: bool) -> nnabla_pb2.Dataset:
    d = nnabla_pb2.Dataset()
    d.name, d.uri, d.batch_size, d.shuffle = name, uri, batch_size, shuffle
    d.cache_dir = os.path.splitext(uri)[0] + ".cache"
    d.overwrite_cache = True
    d.create_cache_explicitly = True
    d.no_image_normalization = False
    d.variable.extend(["x", "y"])
    return d


def _data_variables(message, with_target: bool = True) -> None:
    for variable, data in ((INPUT, "x"), (TARGET, "y"))[: 2 if with_target else 1]:
        dv = message.data_variable.add()
        dv.variable_name, dv.data_name = variable, data


def build_project(
    network: str,
    *,
    classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    train_csv: str = "training.csv",
    val_csv: str = "validation.csv",
    epochs: int = 50,
    batch_size: int = 64,
    solver: str = "Momentum",
    lr: float = 0.01,
    seed: int = 0,
    iter_per_epoch: int = 0,
    monitor_interval: int = 10,
) -> Project:
    """Build ``network`` three times (training, validation, runtime) and assemble the project, parameters initialised."""
    spec = get_network(network)
    whole_number(classes, None, "classes", low=2)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise SettingError(None, "input", f"expected C,H,W with positive sizes, got {','.join(map(str, input_shape))}")
    nn.clear_parameters()
    nn.random.seed(seed)
    np.random.seed(seed)
    x = nn.Variable((batch_size, *input_shape))
    t = nn.Variable((batch_size, 1))
    proto = _three_networks(spec, x, t, classes, batch_size)
    _training_config(proto, epochs, iter_per_epoch, monitor_interval)
    proto.dataset.extend([_dataset("Training", train_csv, batch_size, True), _dataset("Validation", val_csv, batch_size, False)])
    params = OrderedDict((name, Parameter(name, v.d.copy(), True)) for name, v in nn.get_parameters(grad_only=False).items())
    _add_optimizer(proto, params, solver, lr)
    _add_monitors(proto)
    _add_executor(proto, params)
    nn.clear_parameters()
    return Project(proto, params)


def _three_networks(spec, x: nn.Variable, t: nn.Variable, classes: int, batch_size: int) -> nnabla_pb2.NNablaProtoBuf:
    """``Main`` (loss, BN on batch statistics, dropout), ``MainValidation`` and ``MainRuntime`` (Softmax), named the NNC
    way, with NNC's initializers."""
    loss = F.categorical_cross_entropy(F.softmax(spec.builder(x, classes, False)), t)
    loss_v = F.categorical_cross_entropy(F.softmax(spec.builder(x, classes, True)), t)
    y = F.softmax(spec.builder(x, classes, True))
    proto = create_proto(
        {
            "networks": [
                {"name": "Main", "batch_size": batch_size, "outputs": {LOSS: loss}, "names": {INPUT: x, TARGET: t}},
                {"name": "MainValidation", "batch_size": batch_size, "outputs": {LOSS: loss_v}, "names": {INPUT: x, TARGET: t}},
                {"name": "MainRuntime", "batch_size": batch_size, "outputs": {OUTPUT: y}, "names": {INPUT: x}},
            ]
        }
    )
    for net in proto.network:
        _nnc_names(net, keep=(INPUT, TARGET, LOSS, OUTPUT))
        set_nnc_initializers(net)
    return proto


def _training_config(proto: nnabla_pb2.NNablaProtoBuf, epochs: int, iter_per_epoch: int, monitor_interval: int) -> None:
    proto.global_config.default_context.backends.append("cpu:float")
    proto.global_config.default_context.array_class = "CpuCachedArray"
    proto.training_config.max_epoch = epochs
    proto.training_config.iter_per_epoch = iter_per_epoch
    proto.training_config.save_best = True
    proto.training_config.monitor_interval = monitor_interval  # the training-set monitor's; nnabla_cli's default 10


def _add_optimizer(proto: nnabla_pb2.NNablaProtoBuf, params: Parameters, solver: str, lr: float) -> None:
    """One optimizer on ``Main``: every parameter at 1, Batch Normalization's statistics at 0 (as NNC writes them)."""
    opt = proto.optimizer.add()
    opt.name, opt.network_name, opt.update_interval = "Optimizer", "Main", 1
    opt.dataset_name.append("Training")
    opt.solver.CopyFrom(solver_proto(solver, lr))
    _data_variables(opt)
    opt.loss_variable.add().variable_name = LOSS
    for name in params:
        pv = opt.parameter_variable.add()
        pv.variable_name = name
        pv.learning_rate_multiplier = 0.0 if name.rsplit("/", 1)[-1] in FROZEN_BY_DEFAULT and "/bn/" in name else 1.0


def _add_monitors(proto: nnabla_pb2.NNablaProtoBuf) -> None:
    """``train_error`` and ``valid_error``: the validation network's loss on each dataset."""
    for monitor_name, dataset in (("train_error", "Training"), ("valid_error", "Validation")):
        m = proto.monitor.add()
        m.name, m.network_name = monitor_name, "MainValidation"
        m.dataset_name.append(dataset)
        _data_variables(m)
        mv = m.monitor_variable.add()
        mv.type, mv.variable_name = "Error", LOSS


def _add_executor(proto: nnabla_pb2.NNablaProtoBuf, params: Parameters) -> None:
    """``Executor`` on ``MainRuntime``: the Softmax output as ``y'``, as NNC names it."""
    ex = proto.executor.add()
    ex.name, ex.network_name, ex.num_evaluations, ex.repeat_evaluation_type = "Executor", "MainRuntime", 1, "mean"
    ex.need_back_propagation = False
    ex.no_image_normalization = False
    _data_variables(ex, with_target=False)
    out = ex.output_variable.add()
    out.variable_name, out.data_name = OUTPUT, "y'"
    for name in params:
        ex.parameter_variable.add().variable_name = name


def _classes(given: Optional[int], train_csv: Optional[PathLike]) -> Tuple[int, str]:
    """The class count: ``class_count_for`` the training CSV, else ``--classes``, else 10."""
    if train_csv is None:
        return (10, "the default") if given is None else (given, "--classes")
    return class_count_for(given, train_csv)


def export_network(
    network: str,
    output: PathLike,
    *,
    weights: Optional[PathLike] = None,
    train_csv: Optional[PathLike] = None,
    val_csv: Optional[PathLike] = None,
    **options,
) -> ExportResult:
    """Write ``network`` as a project (``.nnp`` with initial parameters, or ``.nntxt``: definition only unless ``weights``)."""
    output = Path(output)
    if output.suffix.lower() not in (".nnp", ".nntxt"):
        raise NncToolsError(output, "export writes .nnp or .nntxt")
    options["classes"], classes_from = _classes(options.get("classes"), train_csv)
    if train_csv and "iter_per_epoch" not in options:
        # nnabla_cli trains max_epoch x iter_per_epoch iterations and NNC fills this in when it starts a run; with the
        # training CSV at hand we fill it in too, so that `nnabla_cli train` runs the project as it is.
        rows = read_header_and_count(train_csv)[1]
        options["iter_per_epoch"] = max(1, rows // options.get("batch_size", 64))
    project = build_project(
        network,
        train_csv=dataset_uri(train_csv, output) if train_csv else "training.csv",
        val_csv=dataset_uri(val_csv, output) if val_csv else "validation.csv",
        **options,
    )
    result = ExportResult([], network, sum(p.data.size for p in project.parameters.values()), options["classes"], classes_from)
    weights = resolve_source(weights) if weights is not None else None  # imagenet:NAME: the published model's file
    if weights is not None:
        result.copied, result.reinitialised = copy_weights(project.parameters, weights)
    if output.suffix.lower() == ".nntxt" and weights is None:
        project.parameters = OrderedDict()
    result.written = save_project(project, output, inputs=[weights] if weights else ())
    return result
