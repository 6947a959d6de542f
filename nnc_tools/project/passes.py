"""Named edits on a loaded project, in the style of nnabla's ``utils/nnp_graph.py``: each pass takes the project's
protobuf (and parameters where it draws them), changes one thing and can be tested alone; ``export`` builds a project
with them and ``retarget`` composes them (``point_datasets``, ``set_batch_size``, ``set_solver``,
``reinitialise``). One home, too, for what NNC writes by default: its initializers and the solvers it can train."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import NncToolsError
from ..fileio import PathLike
from ..formats.nnc_csv import check_first_image, read_header_and_count
from ..formats.nnp import solver_learning_rate
from ..formats.parameters import Parameter, Parameters
from ..formats.schema import learning_rate_field, network_of, nnabla_pb2

# NNC's weight initializers by parameter scope (the layer's W.Initializer); every other parameter is a constant.
WEIGHT_INITIALIZERS = {"conv": "NormalConvolutionGlorot", "affine": "NormalAffineGlorot"}
# Parameters that start at 1 (Batch Normalization's gamma and running variance); every other constant starts at 0.
STARTS_AT_ONE = ("gamma", "var")
_SOLVER_FIELDS = {"RMSpropGraves": "rmsprop_graves_param"}
# The solvers `nnabla_cli train` (nnabla.utils.load) can build; nnc-tl train also trains Lamb and Lion from other projects.
TRAINABLE_SOLVERS = ("Sgd", "Momentum", "Nesterov", "Adam", "AdamW", "AdaBelief", "AdaBound", "Adamax", "AMSGRAD", "AMSBound",
                     "Adagrad", "Adadelta", "RMSprop", "RMSpropGraves", "Lars", "SgdW")


def nnc_initializer(name: str) -> Tuple[str, float]:
    """NNC's initializer for a parameter, by its name (``Convolution/conv/W`` → NormalConvolutionGlorot): (type,
    multiplier)."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[-1] == "W" and parts[-2] in WEIGHT_INITIALIZERS:
        return WEIGHT_INITIALIZERS[parts[-2]], 1.0
    return "Constant", 1.0 if parts[-1] in STARTS_AT_ONE else 0.0


def set_nnc_initializers(network: nnabla_pb2.Network) -> None:
    """Every parameter variable of ``network`` gets NNC's initializer (``nnc_initializer``)."""
    for var in network.variable:
        if var.type == "Parameter":
            var.initializer.type, var.initializer.multiplier = nnc_initializer(var.name)


def initial_values(variable: nnabla_pb2.Variable, old: Parameter, rng: np.random.RandomState) -> Parameter:
    """A parameter drawn with the project's initializer for it (NNabla's own mapping of the ``initializer`` field);
    where the project names none, NNabla's parametric functions' defaults: Glorot-uniform weights, constants as
    ``nnc_initializer`` says (gamma and var 1, the rest 0)."""
    from nnabla.core.graph_def import _create_initializer
    from nnabla.initializer import ConstantInitializer, UniformInitializer, calc_uniform_lim_glorot

    shape = tuple(int(d) for d in variable.shape.dim)
    initializer = _create_initializer(variable, rng) if variable.initializer.type else None
    if initializer is None and len(shape) >= 2:
        fan_in, fan_out = (shape[0], int(np.prod(shape[1:]))) if len(shape) == 2 else (int(np.prod(shape[1:])), shape[0])
        initializer = UniformInitializer(calc_uniform_lim_glorot(fan_in, fan_out), rng=rng)
    elif initializer is None:
        initializer = ConstantInitializer(1 if variable.name.rsplit("/", 1)[-1] in STARTS_AT_ONE else 0)
    return Parameter(old.name, np.asarray(initializer(shape), dtype=old.data.dtype), old.need_grad)


def reinitialise(proto: nnabla_pb2.NNablaProtoBuf, params: Parameters, seed: int,
                 names: Optional[Iterable[str]] = None) -> List[str]:
    """``names`` (default: every parameter the networks declare) drawn anew with ``initial_values``; returns them. A
    name without values is left out: training draws it from its initializer."""
    rng = np.random.RandomState(seed)
    variables = {v.name: v for n in proto.network for v in n.variable if v.type == "Parameter"}
    chosen = [name for name in (params if names is None else names) if name in variables and name in params]
    for name in chosen:
        params[name] = initial_values(variables[name], params[name], rng)
    return chosen


def solver_proto(name: str, lr: float, allowed: Sequence[str] = TRAINABLE_SOLVERS) -> nnabla_pb2.Solver:
    """A solver message for an NNabla solver, its own defaults filled in and its learning rate set to ``lr``."""
    import nnabla.solvers as S

    known = {n.lower(): n for n in allowed}
    canonical = known.get(name.lower())
    if canonical is None:
        raise NncToolsError(None, f"unknown solver '{name}' (one of {', '.join(sorted(known.values()))})")
    solver = nnabla_pb2.Solver()
    solver.type = canonical
    param = getattr(solver, _SOLVER_FIELDS.get(canonical, f"{canonical.lower()}_param"))
    for key, default in inspect.signature(getattr(S, canonical)).parameters.items():
        if key in param.DESCRIPTOR.fields_by_name and default.default is not inspect.Parameter.empty:
            setattr(param, key, default.default)
    setattr(param, learning_rate_field(param), lr)
    solver.weight_decay = 0
    solver.lr_decay = 1
    solver.lr_decay_interval = 1
    return solver


def set_solver(proto: nnabla_pb2.NNablaProtoBuf, solver: Optional[str], lr: Optional[float]) -> None:
    """``solver`` replaces each optimizer's solver (its multipliers kept) at ``lr`` (else the old rate); ``lr`` alone sets
    the project's solver's learning rate."""
    for optimizer in proto.optimizer:
        if solver is not None:
            rate = lr if lr is not None else solver_learning_rate(optimizer.solver) or 0.001
            optimizer.solver.CopyFrom(solver_proto(solver, rate))
        elif lr is not None:
            which = optimizer.solver.WhichOneof("parameter")
            param = getattr(optimizer.solver, which) if which else None
            if param is None or learning_rate_field(param) is None:
                raise NncToolsError(None, f"--lr: the project's {optimizer.solver.type or 'solver'} has no learning rate to set")
            setattr(param, learning_rate_field(param), lr)


def dataset_uri(csv: PathLike, project_path: PathLike) -> str:
    """A CSV path as the project should record it: relative to the project's folder when it lies below it."""
    csv, folder = Path(csv).resolve(), Path(project_path).resolve().parent  # a relative CSV path is relative to here
    try:
        return csv.relative_to(folder).as_posix()
    except ValueError:
        return str(csv)


def set_batch_size(proto: nnabla_pb2.NNablaProtoBuf, batch: int) -> None:
    """Every network's batch size, and the batch axis of its data variables, set to ``batch``."""
    for network in proto.network:
        old = network.batch_size
        network.batch_size = batch
        for v in network.variable:
            if v.type != "Parameter" and v.shape.dim and v.shape.dim[0] == old:
                v.shape.dim[0] = batch


def point_datasets(proto: nnabla_pb2.NNablaProtoBuf, target: Path, train_csv: PathLike, val_csv: PathLike, *,
                   batch_size: Optional[int] = None, epochs: Optional[int] = None,
                   monitor_interval: Optional[int] = None) -> Dict[str, str]:
    """The optimizers' datasets on the training CSV, every other (validation, monitors) on the validation CSV, recorded
    relative to ``target``; batch size, epochs and ``iter_per_epoch`` (one pass over the training CSV) set."""
    training = {name for o in proto.optimizer for name in o.dataset_name}
    if batch_size is not None:
        set_batch_size(proto, batch_size)
    uris = {}
    for d in proto.dataset:
        csv = train_csv if d.name in training else val_csv
        read_header_and_count(csv)
        d.uri = dataset_uri(csv, target)
        if batch_size is not None:
            d.batch_size = batch_size
        uris[d.name] = d.uri
    rows = read_header_and_count(train_csv)[1]
    size = batch_size or next((d.batch_size for d in proto.dataset if d.name in training), 0) or 64
    proto.training_config.iter_per_epoch = max(1, rows // size)  # as export writes it and nnc-tl train counts it
    if epochs is not None:
        proto.training_config.max_epoch = epochs
    if monitor_interval is not None:
        proto.training_config.monitor_interval = monitor_interval
    span_schedules(proto)
    return uris


def span_schedules(proto: nnabla_pb2.NNablaProtoBuf) -> None:
    """Cosine and Polynomial learning-rate schedules span the run: ``max_iter`` = epochs × iterations per epoch (NNC's
    ImageNet projects leave it 0, which NNabla divides by; a source's own span would end the schedule at the wrong
    place in a retargeted run)."""
    span = proto.training_config.max_epoch * proto.training_config.iter_per_epoch
    for optimizer in proto.optimizer:
        solver = optimizer.solver
        if solver.lr_scheduler_type == "Cosine":
            solver.cosine_scheduler_param.max_iter = span
        elif solver.lr_scheduler_type == "Polynomial":
            solver.polynomial_scheduler_param.max_iter = span


def check_input_image(proto: nnabla_pb2.NNablaProtoBuf, csv: Path, where: Path) -> None:
    """The training CSV's first image against the first optimizer network's input ``x`` (channels, height, width)."""
    optimizer = proto.optimizer[0]
    network = network_of(proto, optimizer.network_name)
    data = {dv.data_name: dv.variable_name for dv in optimizer.data_variable}
    shapes = {v.name: list(v.shape.dim) for v in network.variable} if network is not None else {}
    wanted = shapes.get(data.get("x"))
    if wanted and len(wanted) == 4:
        check_first_image(csv, wanted[1:], where)
