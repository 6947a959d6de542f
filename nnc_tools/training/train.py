"""`nnc-tl train`: train an NNabla/NNC project with NNabla, honouring every learning-rate multiplier exactly.

The project is loaded with NNabla's own loader (``nnabla.utils.load.load``): its networks, solver settings, schedulers,
epochs and batch size. What this module adds:

- multipliers: a parameter at 0 is frozen (``need_grad=False``; NNabla then skips the backward of a frozen prefix); any other
  value m gets exactly the update of the project's solver at learning rate x m (one solver per distinct multiplier, built by
  NNabla's own solver factory, so weight decay and schedulers scale too). ``nnabla_cli`` trains every m > 0 at the full rate;
- a Batch Normalization whose beta and gamma are both frozen runs on its running statistics (``--frozen-bn batch`` keeps
  batch statistics, as ``nnabla_cli`` does);
- per-epoch checkpoints (parameters, solver states, epoch) written atomically; the data order and the random functions
  (dropout) of epoch e depend only on (seed, e), so a run killed at any moment and resumed ends bit-identical;
- the files NNC and ``nnabla_cli`` users know: ``results.nnp`` (best validation error), ``results_current.nnp``,
  ``monitoring_report.yml``, plus ``training_log.csv``, ``learning_curve.png``, ``confusion_matrix.{csv,png}``,
  ``summary.json``.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import logging
import math
import os
import shutil
import sys
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import nnabla as nn
import numpy as np
import yaml
from ..formats.schema import nnabla_pb2
from tqdm import tqdm

from ..errors import NncToolsError
from ..project.export import copy_weights
from .frozen_cache import FeatureCache, detach, find_frozen_prefix, memory_budget, shared_cut
from .parallel import DataParallel
from ..fileio import PathLike, atomic_output
from ..data.decoded import Dataset, load_dataset
from ..formats.nnc_csv import read_header_and_count
from .engine import nnabla_load, quick_array_access
from .evaluate import evaluate
from .plots import plot_learning_curve
from ..formats.nnp import Parameter, Project, decode_parameters, encode_parameters, load_project, multipliers, network_text, save_project

CUDA_PIP = "pip install nnabla-ext-cuda120==1.39.0"
CHECKPOINT = "checkpoint.zip"


@dataclass
class TrainOptions:
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    context: str = "cpu"
    device_id: int = 0
    weights: Optional[PathLike] = None
    resume: bool = False
    seed: int = 0
    frozen_bn: str = "inference"  # or "batch"
    progress: bool = True
    cache_frozen: str = "auto"  # auto | on | off
    cache_budget: Optional[int] = None  # bytes of RAM for cached features; default a quarter of memory
    workers: Optional[int] = None  # CPU threads for data-parallel training; default every core this process may use


@dataclass
class EpochRecord:
    epoch: int
    cost: float
    train_error: Optional[float]
    valid_error: Optional[float]
    valid_accuracy: Optional[float]
    seconds: float
    images_per_second: float


@dataclass
class TrainResult:
    result_dir: Path
    history: List[EpochRecord]
    best_epoch: int
    summary: Dict
    reinitialised: List[Tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------- context


def resolve_workers(workers: Optional[int], context: str) -> int:
    """Data-parallel threads: every usable core by default on CPU; one process per device on GPU."""
    if workers is not None and workers < 1:
        raise NncToolsError(None, f"--workers must be at least 1, got {workers}")
    if context != "cpu":
        if workers not in (None, 1):
            raise NncToolsError(None, f"--workers {workers} is for CPU training; on GPU run one process per device "
                                "(mpirun, see the README's multi-GPU section)")
        return 1
    return workers or len(os.sched_getaffinity(0))


def make_context(context: str, device_id: int = 0) -> str:
    """The context string NNabla's loader takes; ``cudnn`` without the CUDA extension is an error with the pip line."""
    if context == "cpu":
        return "cpu"
    if context in ("cudnn", "cuda"):
        try:
            import nnabla_ext.cudnn  # noqa: F401
        except ImportError:
            raise NncToolsError(None, f"--context {context} needs NNabla's CUDA extension: {CUDA_PIP} "
                                "(CUDA 12 and cuDNN 8 on the host)") from None
        return f"cudnn:{device_id}"
    raise NncToolsError(None, f"unknown context '{context}' (cpu or cudnn)")


# -------------------------------------------------------------------------------------------------- project set-up


def is_statistic(name: str) -> bool:
    """Batch Normalization's running mean and variance: parameters no solver trains."""
    return name.endswith(("/bn/mean", "/bn/var"))


def frozen_parameters(proto: nnabla_pb2.NNablaProtoBuf, optimizer: str) -> List[str]:
    """Parameters of the optimizer's network that it does not train (multiplier 0 or not listed)."""
    opt = next(o for o in proto.optimizer if o.name == optimizer)
    m = multipliers(opt)
    net = next((n for n in proto.network if n.name == opt.network_name), None)
    names = [v.name for v in net.variable if v.type == "Parameter"] if net else list(m)
    return [n for n in names if m.get(n, 0.0) == 0.0]


def training_proto(project: Project, options: TrainOptions) -> nnabla_pb2.NNablaProtoBuf:
    """The project as it will be trained: overrides applied, frozen BN on running statistics, no parameter data."""
    proto = nnabla_pb2.NNablaProtoBuf()
    proto.CopyFrom(project.proto)
    if options.epochs is not None:
        proto.training_config.max_epoch = options.epochs
    if options.batch_size is not None:
        for net in proto.network:
            net.batch_size = options.batch_size
        for d in proto.dataset:
            d.batch_size = options.batch_size
    if options.frozen_bn == "inference":
        for opt in proto.optimizer:
            frozen = set(frozen_parameters(proto, opt.name))
            for net in proto.network:
                if net.name != opt.network_name:
                    continue
                for f in net.function:
                    if f.type == "BatchNormalization" and len(f.input) >= 3 and f.input[1] in frozen and f.input[2] in frozen:
                        f.batch_normalization_param.batch_stat = False
    return proto


def _group_solvers(proto_optimizer, parameters: Dict[str, nn.Variable]) -> List[Tuple[float, object, Dict[str, nn.Variable]]]:
    """One solver per distinct multiplier m > 0, built by NNabla's own factory at learning rate x m."""
    groups: Dict[float, Dict[str, nn.Variable]] = OrderedDict()
    for pv in proto_optimizer.parameter_variable:
        m = float(pv.learning_rate_multiplier)
        if m > 0 and pv.variable_name in parameters:
            groups.setdefault(m, OrderedDict())[pv.variable_name] = parameters[pv.variable_name]
    out = []
    for m, params in groups.items():
        scaled = nnabla_pb2.Optimizer()
        scaled.CopyFrom(proto_optimizer)
        which = scaled.solver.WhichOneof("parameter")
        if which is None:
            raise NncToolsError(None, f"optimizer {proto_optimizer.name} has no solver parameters")
        param = getattr(scaled.solver, which)
        key = next(k for k in ("lr", "alpha", "eta") if k in param.DESCRIPTOR.fields_by_name)
        setattr(param, key, getattr(param, key) * m)
        created = _create_solver(scaled)
        created.solver.set_parameters(params)
        out.append((m, created, params))
    return out


def _create_solver(optimizer_proto):
    """NNabla's own solver factory (solver, scheduler, weight decay); for the proto's solver types that factory lacks
    (Lamb, Lion in NNabla 1.39) the solver comes from ``nnabla.solvers`` with the proto's hyper-parameters."""
    import nnabla.solvers as S
    from nnabla.utils.load import _create_optimizer

    try:
        return _create_optimizer(nn.get_current_context(), optimizer_proto, None)
    except ValueError:
        kind = optimizer_proto.solver.type
        factory = getattr(S, kind, None)
        which = optimizer_proto.solver.WhichOneof("parameter")
        if factory is None or which is None:
            raise NncToolsError(None, f"solver {kind} is not one NNabla provides") from None
        param = getattr(optimizer_proto.solver, which)
        accepted = inspect.signature(factory).parameters
        kwargs = {f.name: getattr(param, f.name) for f in param.DESCRIPTOR.fields if f.name in accepted}
        lr = next(kwargs[k] for k in ("lr", "alpha", "eta") if k in kwargs)
        stand_in = nnabla_pb2.Optimizer()
        stand_in.CopyFrom(optimizer_proto)
        stand_in.solver.type = "Sgd"
        stand_in.solver.sgd_param.lr = lr  # NNabla builds the scheduler and weight decay; the update is the real solver's
        created = _create_optimizer(nn.get_current_context(), stand_in, None)
        created.solver = factory(**kwargs)
        return created


def _loader_safe(proto: nnabla_pb2.NNablaProtoBuf) -> nnabla_pb2.NNablaProtoBuf:
    """The proto NNabla's loader is given: a solver type it cannot build becomes Sgd (we build the real solvers)."""
    from nnabla.utils.load import _create_optimizer

    safe = nnabla_pb2.NNablaProtoBuf()
    safe.CopyFrom(proto)
    for o in safe.optimizer:
        try:
            _create_optimizer(nn.get_current_context(), o, None)
        except ValueError:
            o.solver.type = "Sgd"
            o.solver.sgd_param.lr = 0.0
    return safe


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**31 - 1)


class _Graphs:
    """NNabla's loader on the training proto, rebuilt each epoch so that random functions are seeded by (seed, epoch)."""

    def __init__(self, text: str, batch_size: int, context: str):
        self.text, self.batch_size, self.context = text, batch_size, context

    def build(self, seed: int):
        nn.seed(seed)
        return nnabla_load([io.StringIO(self.text)], prepare_data_iterator=False, batch_size=self.batch_size,
                           extension=".nntxt", context=self.context)


def _feed(assign, data: Dict[str, np.ndarray], skip=()) -> None:
    """Put a batch into the network's data variables (``skip``: data names the frozen-prefix cache has cut off)."""
    for variable, name in assign.items():
        if name in skip:
            continue
        if name not in data:
            raise NncToolsError(None, f"variable {variable.name} wants data '{name}', which the dataset does not have")
        v = variable.variable_instance
        value = data[name]
        v.d = value.reshape(v.shape) if value.size == v.size else value


def _padded(indices: np.ndarray, batch_size: int) -> np.ndarray:
    if len(indices) == batch_size:
        return indices
    return np.concatenate([indices, np.resize(indices, batch_size - len(indices))])


def evaluate_monitor(monitor, dataset: Dataset, batch_size: int, workers: int = 1, cached=None) -> Tuple[float, Optional[np.ndarray]]:
    """Mean of the monitor variable over the dataset (``nnabla_cli``'s monitor value) and the class scores, if any;
    with ``workers`` > 1 each batch is split over that many threads. ``cached``: (the monitor graph's cut variable, made a
    leaf, and the dataset's frozen-prefix features), so that only the rest of the network runs."""
    total, count = 0.0, 0
    scores = []
    score_var = _score_variable(monitor)
    outputs = [var.variable_instance for var in monitor.monitor_variables] + ([score_var] if score_var is not None else [])
    parallel = DataParallel(outputs, nn.get_parameters(grad_only=False), workers, batch_size) if workers > 1 else None
    skip = _image_keys(dataset) if cached is not None else ()
    for start in range(0, dataset.size, batch_size):
        idx = np.arange(start, min(start + batch_size, dataset.size))
        rows = _padded(idx, batch_size)
        if cached is not None:
            cached[0].d = cached[1].values[rows]
        _feed(monitor.dataset_assign, dataset.batch(rows, skip), skip)
        if parallel is not None:
            values = parallel.forward()
        else:
            monitor.target.forward(clear_buffer=False)
            values = [v.d for v in outputs]
        n = len(idx)
        for v in values[: len(monitor.monitor_variables)]:
            total += float(v.reshape(batch_size, -1)[:n].mean(axis=1).sum())
        count += n
        if score_var is not None:
            scores.append(values[-1].reshape(batch_size, -1)[:n].copy())
    if parallel is not None:
        parallel.close()
    return total / max(count, 1), (np.concatenate(scores) if scores else None)


def _score_variable(monitor) -> Optional[nn.Variable]:
    """The class scores feeding the monitored loss (the Softmax before CategoricalCrossEntropy), if there is one."""
    for var in monitor.monitor_variables:
        parent = var.variable_instance.parent
        if parent is not None and parent.info.type_name in ("CategoricalCrossEntropy", "SoftmaxCrossEntropy") and parent.inputs:
            return parent.inputs[0]
    return None


# ------------------------------------------------------------------------------------------------------ checkpoints


def _save_checkpoint(path: Path, epoch: int, solvers, history: List[EpochRecord], best: Tuple[int, float], seed: int) -> None:
    """Parameters, every solver's state, the epoch and the history, in one zip renamed into place."""
    with atomic_output(path) as temp, zipfile.ZipFile(temp, "w") as zf:
        zf.writestr("parameters.h5", encode_parameters(_current_parameters(), ".h5"))
        for i, (_, created, _) in enumerate(solvers):
            state = path.with_name(f".solver{i}.h5")  # NNabla picks the format from the extension
            try:
                created.solver.save_states(str(state))
                zf.writestr(f"solver_{i}.h5", state.read_bytes())
            finally:
                state.unlink(missing_ok=True)
        zf.writestr("state.json", json.dumps({"epoch": epoch, "seed": seed, "best": list(best), "history": [r.__dict__ for r in history]}))


def _load_checkpoint(path: Path, solvers) -> Tuple[int, List[EpochRecord], Tuple[int, float]]:
    with zipfile.ZipFile(path) as zf:
        params = decode_parameters(zf.read("parameters.h5"), ".h5", str(path))
        current = nn.get_parameters(grad_only=False)
        for name, p in params.items():
            if name in current:
                current[name].d = p.data
        for i, (_, created, _) in enumerate(solvers):
            tmp = path.with_name(f".solver{i}.h5")
            tmp.write_bytes(zf.read(f"solver_{i}.h5"))
            try:
                created.solver.load_states(str(tmp))
            finally:
                tmp.unlink()
        state = json.loads(zf.read("state.json"))
    return state["epoch"], [EpochRecord(**r) for r in state["history"]], tuple(state["best"])


# ---------------------------------------------------------------------------------------------------------- training


def train_step(opt, solvers, batch: Dict[str, np.ndarray], iteration: int, function_pre_hook=None, skip=(),
               parallel: Optional[DataParallel] = None) -> float:
    """One iteration as ``nnabla_cli`` runs it (forward, backward with grad 1/size, weight decay, scheduled learning rate,
    update), with one solver per multiplier group; returns the mean loss of the batch. With ``parallel`` the forward and
    backward are split over its workers (the gradients, hence the update, are the same)."""
    _feed(opt.dataset_assign, batch, skip)
    for _, created, _ in solvers:
        created.solver.zero_grad()
    if parallel is not None:
        loss = parallel.forward_backward()
    else:
        opt.target.forward(clear_no_need_grad=True)
        opt.target.backward(grad=1.0 / opt.loss_variables[0].variable_instance.size, clear_buffer=True,
                            function_pre_hook=function_pre_hook)
        loss = float(np.mean(opt.loss_variables[0].variable_instance.d))
    for _, created, _ in solvers:
        if created.weight_decay > 0:
            created.solver.weight_decay(created.weight_decay)
        created.solver.set_learning_rate(created.scheduler.get_learning_rate(iteration))
        created.solver.update()
    return loss


def _current_parameters() -> "OrderedDict[str, Parameter]":
    return OrderedDict((k, Parameter(k, v.d.copy(), v.need_grad)) for k, v in nn.get_parameters(grad_only=False).items())


def train(project_path: PathLike, result_dir: PathLike, options: Optional[TrainOptions] = None) -> TrainResult:
    """Train a project; see the module docstring for what is written to ``result_dir``."""
    options = options or TrainOptions()
    project_path, result_dir = Path(project_path), Path(result_dir)
    checkpoint = result_dir / CHECKPOINT
    if checkpoint.exists() and not options.resume:
        raise NncToolsError(result_dir, "holds an earlier run (use --resume to continue it, or another folder)")
    if options.frozen_bn not in ("inference", "batch"):
        raise NncToolsError(None, f"--frozen-bn must be inference or batch, got {options.frozen_bn}")
    context = make_context(options.context, options.device_id)
    workers = resolve_workers(options.workers, options.context)
    project = load_project(project_path)
    if not project.proto.optimizer:
        raise NncToolsError(project_path, "has no optimizer to train")
    proto = training_proto(project, options)
    optimizer_proto = proto.optimizer[0]
    batch_size = options.batch_size or next((n.batch_size for n in proto.network if n.name == optimizer_proto.network_name), 64) or 64

    base = project_path.resolve().parent
    uris = {d.name: dataset_path(d.uri, base) for d in proto.dataset}
    for d in proto.dataset:
        read_header_and_count(uris[d.name])  # a missing or unreadable CSV fails before anything is written
    created = not result_dir.exists()
    result_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _train(project_path, result_dir, options, project, proto, uris, batch_size, context, workers)
    except NncToolsError:
        if created:
            shutil.rmtree(result_dir, ignore_errors=True)
        raise


def dataset_path(uri: str, base: Path) -> Path:
    """A dataset URI as a path: relative ones against the project's folder; NNC's Windows separators accepted."""
    if "{SDCPATH}" in uri:
        raise NncToolsError(uri, "points into NNC's installation folder ({SDCPATH}); point the project at a local CSV")
    path = Path(uri.replace("\\", "/")) if os.sep == "/" else Path(uri)
    return path if path.is_absolute() else base / path


def _train(project_path: Path, result_dir: Path, options: TrainOptions, project: Project, proto, uris: Dict[str, Path],
           batch_size: int, context: str, workers: int) -> TrainResult:
    optimizer_proto = proto.optimizer[0]
    checkpoint = result_dir / CHECKPOINT
    epochs = proto.training_config.max_epoch
    logging.getLogger("nnabla").setLevel(logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    quick_array_access()
    nn.clear_parameters()
    nn.random.seed(options.seed)
    stored = project.parameters
    for name, p in stored.items():
        nn.parameter.get_parameter_or_create(name, p.data.shape, need_grad=p.need_grad).d = p.data
    reinitialised: List[Tuple[str, str]] = []
    text = network_text(proto)
    graphs = _Graphs(network_text(_loader_safe(proto)), batch_size, context)
    graphs.build(_epoch_seed(options.seed, 0))  # creates (from the initializers) the parameters the project does not store
    if options.weights is not None:
        params = _current_parameters()
        _, reinitialised = copy_weights(params, options.weights)
        for name, p in params.items():
            nn.get_parameters(grad_only=False)[name].d = p.data
    with atomic_output(result_dir / "network.nntxt") as temp:
        temp.write_text(text)

    datasets: Dict[str, Dataset] = {}
    for d in proto.dataset:
        datasets[d.name] = load_dataset(uris[d.name], result_dir / "cache" / d.name, name=d.name,
                                        normalize=not d.no_image_normalization, shuffle=d.shuffle)
    train_set = datasets[optimizer_proto.dataset_name[0]]
    iter_per_epoch = proto.training_config.iter_per_epoch or max(1, train_set.size // batch_size)

    frozen = frozen_parameters(proto, optimizer_proto.name)
    params_now = nn.get_parameters(grad_only=False)
    solvers = _group_solvers(optimizer_proto, params_now)
    trained = {name for _, _, ps in solvers for name in ps}
    for name, var in params_now.items():
        var.need_grad = name in trained

    plan = None
    if options.cache_frozen not in ("auto", "on", "off"):
        raise NncToolsError(None, f"--cache-frozen must be auto, on or off, got {options.cache_frozen}")
    if options.cache_frozen != "off":
        plan = find_frozen_prefix(proto, optimizer_proto.name)
        if plan.cut is None:
            if options.cache_frozen == "on":
                raise NncToolsError(project_path, f"--cache-frozen on: no frozen prefix to cache ({plan.stopped_at}: {plan.reason})")
            print(f"frozen-prefix cache: not used ({plan.stopped_at or 'first layer'}: {plan.reason})", file=sys.stderr)
            plan = None
        else:
            print(f"frozen-prefix cache: {len(plan.layers)} functions up to {plan.layers[-1]} computed once per image "
                  f"(stopped at {plan.stopped_at or 'the end'}: {plan.reason})", file=sys.stderr)
    budget = options.cache_budget or memory_budget()
    features: Optional[FeatureCache] = None
    monitor_features: Dict[str, FeatureCache] = {}  # per dataset name, for monitors that share the frozen prefix
    monitor_cuts = {m.name: shared_cut(proto, optimizer_proto.name, m.network_name, plan) if plan else None
                    for m in proto.monitor}
    history: List[EpochRecord] = []
    best: Tuple[int, float] = (0, math.inf)
    start_epoch = 0
    if options.resume and checkpoint.exists():
        start_epoch, history, best = _load_checkpoint(checkpoint, solvers)
    started = time.perf_counter()
    progress = options.progress and sys.stderr.isatty()
    for epoch in range(start_epoch + 1, epochs + 1):
        info = graphs.build(_epoch_seed(options.seed, epoch))
        opt = info.optimizers[optimizer_proto.name]
        t0 = time.perf_counter()  # the epoch's time includes filling the frozen-prefix cache, when it is filled
        cut, skip = None, ()
        if plan is not None:
            cut = opt.network.variables[plan.cut].variable_instance
            if features is None:
                t_cache = time.perf_counter()
                features = _computed_features(cut, opt.dataset_assign, train_set, batch_size, workers, budget,
                                              result_dir / "cache")
                print(f"frozen-prefix cache: {features.nbytes / 2**20:.0f} MB {'in RAM' if features.in_memory else 'memory-mapped'}, "
                      f"{time.perf_counter() - t_cache:.1f} s", file=sys.stderr)
            detach(cut)
            monitor_features[train_set.name] = features  # the training-set monitor reads the same features
            skip = _image_keys(train_set)  # the images: cut off
        parallel = None
        if workers > 1 and len(opt.loss_variables) == 1:
            parallel = DataParallel([opt.loss_variables[0].variable_instance], params_now, workers, batch_size)
            if epoch == start_epoch + 1:
                print(f"data parallel: {parallel.describe_slices()}; they meet at "
                      f"{parallel.describe_sync_points()}", file=sys.stderr)
        elif workers > 1 and epoch == start_epoch + 1:
            print(f"data parallel: not used ({len(opt.loss_variables)} loss variables); one worker", file=sys.stderr)
        order = np.random.RandomState(_epoch_seed(options.seed, epoch)).permutation(train_set.size) if train_set.shuffle \
            else np.arange(train_set.size)
        cost = 0.0
        bar = tqdm(range(iter_per_epoch), desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False, unit="it")
        for i in bar:
            iteration = (epoch - 1) * iter_per_epoch + i
            idx = np.take(order, np.arange(i * batch_size, (i + 1) * batch_size), mode="wrap")
            if cut is not None:
                cut.d = features.values[idx]
            cost += train_step(opt, solvers, train_set.batch(idx, skip), iteration, skip=skip, parallel=parallel)
        seconds = time.perf_counter() - t0
        if parallel is not None:
            parallel.close()
        record = EpochRecord(epoch, cost / iter_per_epoch, None, None, None, seconds, iter_per_epoch * batch_size / max(seconds, 1e-9))
        interval = proto.training_config.monitor_interval or 10
        due = {}  # like nnabla_cli: the training-set monitor every monitor_interval epochs (and at the end)
        for name, monitor in info.monitors.items():
            dataset = datasets[monitor.proto.dataset_name[0]]
            on_training_set = dataset is train_set or name.startswith("train")
            if not (on_training_set and epoch % interval and epoch != epochs):
                due[name] = (monitor, dataset, on_training_set)
        cached = {}  # every monitor's features first: monitors may share a graph, and cutting it for one cuts it for all
        for name, (monitor, dataset, _) in due.items():
            if monitor_cuts.get(name) is not None:
                cached[name] = _monitor_features(monitor, dataset, monitor_cuts[name], monitor_features, batch_size,
                                                 workers, budget, result_dir / "cache" / "monitors")
        for name, (monitor, dataset, on_training_set) in due.items():
            if name in cached:
                detach(cached[name][0])
            value, scores = evaluate_monitor(monitor, dataset, batch_size, workers, cached.get(name))
            if on_training_set:
                record.train_error = value
            else:
                record.valid_error = value
                if scores is not None:
                    record.valid_accuracy = float(np.mean(scores.argmax(axis=1) == dataset.arrays[_label_key(dataset)].reshape(-1)))
        history.append(record)
        line = f"epoch {epoch}/{epochs} cost={record.cost:.6f}"
        line += "".join(f" {k}={v:.6f}" for k, v in (("train_error", record.train_error), ("valid_error", record.valid_error),
                                                      ("valid_accuracy", record.valid_accuracy)) if v is not None)
        print(f"{line} time={seconds:.1f}s ({record.images_per_second:.1f} img/s)", file=sys.stderr)
        current = Project(project.proto, _current_parameters())
        save_project(current, result_dir / "results_current.nnp")
        score = record.valid_error if record.valid_error is not None else record.cost
        if score < best[1] or not (result_dir / "results.nnp").exists():
            best = (epoch, score)
            save_project(current, result_dir / "results.nnp")
        _write_reports(result_dir, history)
        _save_checkpoint(checkpoint, epoch, solvers, history, best, options.seed)

    wall = time.perf_counter() - started
    validation = [uris[d.name] for d in proto.dataset if d.name != optimizer_proto.dataset_name[0]]
    summary = _summary(project_path, result_dir, validation[-1] if validation else None, history, best, frozen, reinitialised,
                       wall, batch_size, options, workers)
    return TrainResult(result_dir, history, best[0], summary, reinitialised)


def _image_keys(dataset: Dataset) -> set:
    """The dataset's image arrays: what a network cut after its frozen prefix no longer reads."""
    return {name for name in dataset.arrays if dataset.arrays[name].ndim >= 3}


def _computed_features(cut: nn.Variable, assign, dataset: Dataset, batch_size: int, workers: int, budget: int,
                       folder: Path) -> FeatureCache:
    """The cut variable's values for every row of the dataset, the prefix run once (over the workers, if several)."""
    if cut.parent is None:  # a cut graph would give the cut's current values for every batch
        raise RuntimeError("the frozen prefix is already cut off from this graph: compute its features before detach()")
    features = FeatureCache(cut, dataset.size, budget, folder)
    prefix = DataParallel([cut], nn.get_parameters(grad_only=False), workers, batch_size) if workers > 1 else None

    def one_graph() -> np.ndarray:
        cut.forward(clear_buffer=True)
        return cut.d

    features.fill(lambda b: _feed(assign, b), (lambda: prefix.forward()[0]) if prefix is not None else one_graph, dataset,
                  batch_size)
    if prefix is not None:
        prefix.close()
    return features


def _monitor_features(monitor, dataset: Dataset, cut: str, known: Dict[str, FeatureCache], batch_size: int, workers: int,
                      budget: int, folder: Path) -> Tuple[nn.Variable, FeatureCache]:
    """The monitor graph's cut (still in the graph: the caller makes it a leaf) and the dataset's features: the training
    cache for the training set, else computed once through the monitor's own prefix and kept for later epochs."""
    var = monitor.network.variables[cut].variable_instance
    if dataset.name not in known:
        print(f"frozen-prefix cache: also for the monitors on {dataset.name} ({dataset.size} images)", file=sys.stderr)
        known[dataset.name] = _computed_features(var, monitor.dataset_assign, dataset, batch_size, workers, budget,
                                                 folder / dataset.name)
    return var, known[dataset.name]


def _label_key(dataset: Dataset) -> str:
    return "y" if "y" in dataset.arrays else list(dataset.arrays)[-1]


def _write_reports(result_dir: Path, history: List[EpochRecord]) -> None:
    report = {}
    for r in history:
        entry = {"cost": r.cost}
        if r.train_error is not None:
            entry["train_error"] = r.train_error
        if r.valid_error is not None:
            entry["valid_error"] = r.valid_error
        report[r.epoch - 1] = entry
    with atomic_output(result_dir / "monitoring_report.yml") as temp:
        temp.write_text(yaml.safe_dump(report, sort_keys=False))
    with atomic_output(result_dir / "training_log.csv") as temp, open(temp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["epoch", "cost", "train_error", "valid_error", "valid_accuracy", "seconds", "images_per_second"])
        for r in history:
            writer.writerow([r.epoch, r.cost, r.train_error, r.valid_error, r.valid_accuracy, round(r.seconds, 3), round(r.images_per_second, 2)])


def _summary(project_path, result_dir, val_csv, history, best, frozen, reinitialised, wall, batch_size, options, workers) -> Dict:
    shapes = {k: v.shape for k, v in nn.get_parameters(grad_only=False).items()}
    plot_learning_curve(history, result_dir / "learning_curve.png")
    evaluation = evaluate(result_dir / "results.nnp", val_csv, result_dir, batch_size=batch_size) if val_csv else None
    best_record = next((r for r in history if r.epoch == best[0]), history[-1] if history else None)
    train_times = [r.seconds for r in history]
    images = sum(r.images_per_second * r.seconds for r in history)
    summary = {
        "project": str(project_path),
        "epochs": len(history),
        "best_epoch": best[0],
        "best_valid_error": best_record.valid_error if best_record else None,
        "best_valid_accuracy": best_record.valid_accuracy if best_record else None,
        "accuracy": evaluation["accuracy"] if evaluation else None,
        "final_cost": history[-1].cost if history else None,
        "wall_seconds": round(wall, 3),
        "training_seconds": round(sum(train_times), 3),
        "images_per_second": round(images / max(sum(train_times), 1e-9), 2),
        "batch_size": batch_size,
        "seed": options.seed,
        "frozen_parameters": [n for n in frozen if not is_statistic(n)],
        "frozen_parameter_values": int(sum(np.prod(shapes[n]) for n in frozen if n in shapes and not is_statistic(n))),
        "frozen_bn": options.frozen_bn,
        "reinitialised": [list(r) for r in reinitialised],
        "context": options.context,
        "workers": workers,
    }
    with atomic_output(result_dir / "summary.json") as temp:
        temp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
