"""`nnc-tl train`: train an NNabla/NNC project with NNabla, honouring every learning-rate multiplier exactly.

The project is loaded with NNabla's own loader (``nnabla.utils.load.load``): its networks, solver settings, schedulers,
epochs and batch size. What this module adds:

- multipliers: a parameter at 0 is frozen (``need_grad=False``; NNabla then skips the backward of a frozen prefix); any other
  value m gets exactly the update of the project's solver at learning rate x m (``solvers.group_solvers``);
- a Batch Normalization whose beta and gamma are both frozen runs on its running statistics (``--frozen-bn batch`` keeps
  batch statistics, as ``nnabla_cli`` does);
- per-epoch checkpoints (``checkpoint``); the data order and the random functions (dropout) of epoch e depend only on
  (seed, e), so a run killed at any moment and resumed ends bit-identical;
- the files NNC and ``nnabla_cli`` users know: ``results.nnp`` (best validation error), ``results_current.nnp``,
  ``monitoring_report.yml``, plus ``training_log.csv``, ``learning_curve.png``, ``confusion_matrix.{csv,png}``, ``summary.json``;
- a parameter kept frozen with no values to start from is refused (it would train frozen at random).
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import nnabla as nn
import numpy as np
from tqdm import tqdm

from ..data.decoded import Dataset, load_dataset
from ..errors import NncToolsError, about
from ..fileio import PathLike, atomic_output, file_digest, folder_lock
from ..formats.naming import is_statistic
from ..formats.nnc_csv import dataset_path, read_header_and_count
from ..formats.nnp import Project, load_project, network_text, project_file, save_project
from ..formats.schema import network_of
from ..project.onnx_export import write_results_onnx
from ..project.overlay import FROZEN_BN
from ..project.passes import dataset_uri, set_solver
from ..project.weights import copy_weights
from ..yamlfile import one_of
from .checkpoint import (
    CHECKPOINT,
    checkpoint_settings,
    current_parameters,
    load_checkpoint,
    parameter_signature,
    resumed_options,
    save_checkpoint,
)
from .checks import check_datasets_named, check_headers, check_labels, check_schedules
from .engine import make_context, quick_array_access, resolve_workers
from .evaluate import evaluate
from .frozen_cache import FeatureCache, detach, memory_budget, plan_prefix_cache, shared_cut
from .graphs import TrainingGraphs, epoch_seed, feed, frozen_parameters, refuse_frozen_at_random, training_proto
from .monitors import computed_features, due_monitors, image_keys, record_monitors
from .parallel import DataParallel
from .phases import PhasePlan, carry_states, phase_at, plan_phases, solver_states
from .plots import plot_learning_curve
from .records import EpochRecord, Evaluation, ProgressReport, RunSummary, epoch_line, rest_line, summarise, write_reports, write_summary
from .solvers import group_solvers, loader_safe

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    context: str = "cpu"
    device_id: int = 0
    weights: Optional[PathLike] = None
    resume: bool = False
    seed: Optional[int] = None  # None: not given (0, or the resumed run's)
    frozen_bn: Optional[str] = None  # "inference" (the default) or "batch"
    progress: bool = True
    cache_frozen: Optional[str] = None  # auto (the default) | on | off
    cache_budget: Optional[int] = None  # bytes of RAM for cached features; default a quarter of memory
    workers: Optional[int] = None  # CPU threads for data-parallel training; default every core this process may use
    phases: Optional[PathLike] = None  # an overlay with phases: the run trains them one after the other
    solver: Optional[str] = None  # replace the project's solver (its multipliers kept)
    lr: Optional[float] = None  # the learning rate (of --solver, or of the project's solver)
    allow_frozen_initial: bool = False  # train a parameter kept frozen though nothing gives it values


@dataclass
class TrainResult:
    result_dir: Path
    history: List[EpochRecord]
    best_epoch: int
    summary: RunSummary
    reinitialised: List[Tuple[str, str]] = field(default_factory=list)


def train_step(opt, solvers, batch: Dict[str, np.ndarray], iteration: int, function_pre_hook=None, skip=(),
               parallel: Optional[DataParallel] = None) -> float:
    """One iteration as ``nnabla_cli`` runs it (forward, backward with grad 1/size, weight decay, scheduled learning rate,
    update), with one solver per multiplier group; returns the mean loss of the batch. With ``parallel`` the forward and
    backward are split over its workers (the gradients, hence the update, are the same)."""
    feed(opt.dataset_assign, batch, skip)
    for group in solvers:
        group.solver.zero_grad()
    if parallel is not None:
        loss = parallel.forward_backward()
    else:
        opt.target.forward(clear_no_need_grad=True)
        opt.target.backward(grad=1.0 / opt.loss_variables[0].variable_instance.size, clear_buffer=True,
                            function_pre_hook=function_pre_hook)
        loss = float(np.mean(opt.loss_variables[0].variable_instance.d))
    for group in solvers:
        created = group.created
        if created.weight_decay > 0:
            created.solver.weight_decay(created.weight_decay)
        created.solver.set_learning_rate(created.scheduler.get_learning_rate(iteration))
        created.solver.update()
    return loss


OPTION_DEFAULTS = {"seed": 0, "frozen_bn": "inference", "cache_frozen": "auto"}


def train(project_path: PathLike, result_dir: PathLike, options: Optional[TrainOptions] = None) -> TrainResult:
    """Train a project; see the module docstring for what is written to ``result_dir``."""
    options = options or TrainOptions()
    project_path, result_dir = project_file(project_path), Path(result_dir)
    checkpoint = result_dir / CHECKPOINT
    if checkpoint.exists() and not options.resume:
        raise NncToolsError(result_dir, "holds an earlier run (use --resume to continue it, or another folder)")
    if options.resume and checkpoint.exists():  # the run goes on as it was started, on the project it was started on
        options = resumed_options(options, checkpoint)
        started_on = checkpoint_settings(checkpoint).get("parameters")
        if started_on is not None and started_on != parameter_signature(load_project(project_path).proto):
            raise NncToolsError(result_dir, f"holds a run of a network other than {project_path.name}'s (other parameters "
                                "or shapes): resume it with its own project, or choose another folder")
    options = replace(options, **{k: v for k, v in OPTION_DEFAULTS.items() if getattr(options, k) is None})
    one_of(options.frozen_bn, FROZEN_BN, None, "frozen_bn")
    one_of(options.cache_frozen, ("auto", "on", "off"), None, "cache_frozen")
    context = make_context(options.context, options.device_id)
    workers = resolve_workers(options.workers, options.context)
    project = load_project(project_path)
    if not project.proto.optimizer:
        raise NncToolsError(project_path, "has no optimizer to train")
    set_solver(project.proto, options.solver, options.lr)  # --solver/--lr: what results.nnp then says it trained with
    phases = plan_phases(project, options, project_path) if options.phases is not None else None
    proto = phases[0].trained if phases else training_proto(project, options)
    optimizer_proto = proto.optimizer[0]
    batch_size = options.batch_size or getattr(network_of(proto, optimizer_proto.network_name), "batch_size", 64) or 64

    if not (options.allow_frozen_initial or options.resume):  # (a resumed run has its values in its checkpoint)
        refuse_frozen_at_random(project, proto, options.weights, project_path)
    check_datasets_named(proto, project_path)
    check_schedules(proto, project_path)
    uris = {d.name: dataset_path(d.uri, project_path.resolve().parent) for d in proto.dataset}
    for uri in uris.values():
        read_header_and_count(uri)  # a missing or unreadable CSV fails before anything is written
    try:
        check_headers(proto, optimizer_proto, proto.monitor, uris)  # before a million rows are decoded
    except NncToolsError as e:
        raise about(project_path, e) from None
    created = not result_dir.exists()
    result_dir.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(result_dir, "train"):
            return TrainingRun(project_path, result_dir, options, project, proto, uris, batch_size, context, workers, phases).run()
    except NncToolsError as e:
        if created:
            shutil.rmtree(result_dir, ignore_errors=True)
        raise about(project_path, e) from None


class TrainingRun:
    """One ``train`` call: the parameters set up, datasets decoded, solvers grouped and the frozen-prefix cache planned,
    then each epoch trained, monitored, saved and checkpointed, and the summary written."""

    def __init__(self, project_path: Path, result_dir: Path, options: TrainOptions, project: Project, proto,
                 uris: Dict[str, Path], batch_size: int, context: str, workers: int, phases=None):
        self.project_path, self.result_dir, self.options = project_path, result_dir, options
        self.project, self.proto, self.uris = project, proto, uris
        self.batch_size, self.context, self.workers = batch_size, context, workers
        self.optimizer_proto = proto.optimizer[0]
        self.checkpoint = result_dir / CHECKPOINT
        self.epochs = proto.training_config.max_epoch
        self.budget = options.cache_budget or memory_budget()
        self.features: Optional[FeatureCache] = None
        self.monitor_features: Dict[str, FeatureCache] = {}  # per dataset name, for monitors sharing the frozen prefix
        self.fill_seconds = 0.0  # the frozen-prefix cache's filling, not a pace the other epochs keep
        self.history: List[EpochRecord] = []
        self.best: Tuple[int, float] = (0, math.inf)
        self.reinitialised: List[Tuple[str, str]] = []
        self.phases = phases or [PhasePlan(0, 1, max(self.epochs, 1), project.proto, proto)]  # one, unless --phases
        for phase in self.phases:  # what results.nnp says of its data resolves from the result folder, where it lies
            for d in phase.saved.dataset:
                d.uri = dataset_uri(uris[d.name], result_dir / "results.nnp")
        self.phase: Optional[PhasePlan] = None

    def run(self) -> TrainResult:
        self._set_up_parameters()
        self._load_datasets()
        resuming = self.options.resume and self.checkpoint.exists()
        saved = checkpoint_settings(self.checkpoint) if resuming else {}
        self._enter(phase_at(self.phases, max(saved.get("trained_epochs", 0), 1)))  # the checkpoint's phase's solvers
        start_epoch = 0
        if resuming:
            start_epoch, self.history, self.best = load_checkpoint(self.checkpoint, self.solvers)
        # the run's wall time goes on from what its earlier sessions took (a resumed finished run is not "0 s")
        self.wall_before = float(saved.get("wall_seconds", 0.0))
        self.started = started = time.perf_counter()
        for epoch in range(start_epoch + 1, self.epochs + 1):
            phase = phase_at(self.phases, epoch)
            if phase is not self.phase:
                states = solver_states(self.solvers)
                self._enter(phase)
                carry_states(states, self.solvers)
            self._epoch(epoch, first=epoch == start_epoch + 1 or epoch == phase.first)
        return self._finish(self.wall_before + time.perf_counter() - started)

    def _enter(self, phase: PhasePlan) -> None:
        """A phase's project: its graphs (where they differ), solvers, frozen-prefix cache and the monitors' cuts."""
        if self.phase is not None or phase.trained is not self.proto:
            self.proto, self.optimizer_proto = phase.trained, phase.trained.optimizer[0]
            self.graphs = TrainingGraphs(network_text(loader_safe(self.proto)), self.batch_size, self.context)
        self.project.proto = phase.saved  # what results.nnp carries: this phase's multipliers
        self.phase = phase
        if len(self.phases) > 1:
            log.info(f"phase {phase.index + 1} of {len(self.phases)}: epochs {phase.first} to {phase.last}")
        self._make_solvers()
        self.features, self.monitor_features = None, {}
        self.plan = plan_prefix_cache(self.proto, self.optimizer_proto.name, self.options.cache_frozen, self.project_path)
        self.monitor_cuts = {m.name: shared_cut(self.proto, self.optimizer_proto.name, m.network_name, self.plan)
                             if self.plan else None for m in self.proto.monitor}

    # ------------------------------------------------------------------------------------------------------ set-up

    def _set_up_parameters(self) -> None:
        """The stored parameters, those the initializers make, ``--weights`` on top; ``network.nntxt`` written."""
        logging.getLogger("nnabla").setLevel(logging.WARNING)
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        quick_array_access()
        nn.clear_parameters()
        nn.random.seed(self.options.seed)
        for name, p in self.project.parameters.items():
            nn.parameter.get_parameter_or_create(name, p.data.shape, need_grad=p.need_grad).d = p.data
        self.graphs = TrainingGraphs(network_text(loader_safe(self.proto)), self.batch_size, self.context)
        self.graphs.build(epoch_seed(self.options.seed, 0))  # creates the parameters the project does not store
        if self.options.weights is not None:
            params = current_parameters()
            _, self.reinitialised = copy_weights(params, self.options.weights)
            for name, p in params.items():
                nn.get_parameters(grad_only=False)[name].d = p.data
        with atomic_output(self.result_dir / "network.nntxt") as temp:
            temp.write_text(network_text(self.proto))

    def _load_datasets(self) -> None:
        self.datasets: Dict[str, Dataset] = {}
        for d in self.proto.dataset:
            self.datasets[d.name] = load_dataset(self.uris[d.name], self.result_dir / "cache" / d.name, name=d.name,
                                                 normalize=not d.no_image_normalization, shuffle=d.shuffle)
        check_labels(self.proto, self.optimizer_proto, self.proto.monitor, self.datasets)
        self.train_set = self.datasets[self.optimizer_proto.dataset_name[0]]
        # one pass over the training set; the project's iter_per_epoch counts batches of its own size, not --batch-size's
        stored = self.proto.training_config.iter_per_epoch if self.options.batch_size is None else 0
        self.iter_per_epoch = stored or max(1, self.train_set.size // self.batch_size)

    def _make_solvers(self) -> None:
        self.frozen = frozen_parameters(self.proto, self.optimizer_proto.name)
        self.parameters = nn.get_parameters(grad_only=False)
        self.solvers = group_solvers(self.optimizer_proto, self.parameters)
        trained = {name for group in self.solvers for name in group.parameters}
        for name, var in self.parameters.items():
            var.need_grad = name in trained

    # ------------------------------------------------------------------------------------------------------ epochs

    def _epoch(self, epoch: int, first: bool) -> None:
        info = self.graphs.build(epoch_seed(self.options.seed, epoch))
        opt = info.optimizers[self.optimizer_proto.name]
        t0 = time.perf_counter()  # the epoch's time includes filling the frozen-prefix cache, when it is filled
        cut, skip = self._cut_prefix(opt)
        parallel = self._data_parallel(opt, first)
        cost = self._train_iterations(opt, epoch, cut, skip, parallel)
        seconds = time.perf_counter() - t0
        if parallel is not None:
            parallel.close()
        record = EpochRecord(epoch, cost, None, None, None, seconds,
                             self.iter_per_epoch * self.batch_size / max(seconds, 1e-9),
                             self.phase.index + 1 if len(self.phases) > 1 else None)
        self._monitor(info, epoch, record)
        self.history.append(record)
        log.info(epoch_line(record, self.epochs))
        if first and epoch < self.epochs:  # what the rest will take, measured, when it is first known
            log.info(rest_line(self.epochs - epoch, record.seconds - self.fill_seconds))
        self._save(epoch, record)

    def _cut_prefix(self, opt) -> tuple:
        """The graph cut after its frozen prefix (features computed on the first epoch) and the data it no longer reads."""
        if self.plan is None:
            return None, ()
        cut = opt.network.variables[self.plan.cut].variable_instance
        if self.features is None:
            t_cache = time.perf_counter()
            self.features = computed_features(cut, opt.dataset_assign, self.train_set, self.batch_size, self.workers,
                                              self.budget, self.result_dir / "cache")
            self.fill_seconds = time.perf_counter() - t_cache
            log.info(f"frozen-prefix cache: {self.features.nbytes / 2**20:.0f} MB "
                     f"{'in RAM' if self.features.in_memory else 'memory-mapped'}, {self.fill_seconds:.1f} s")
        detach(cut)
        self.monitor_features[self.train_set.name] = self.features  # the training-set monitor reads the same features
        return cut, image_keys(self.train_set)

    def _data_parallel(self, opt, first: bool) -> Optional[DataParallel]:
        if self.workers > 1 and len(opt.loss_variables) == 1:
            parallel = DataParallel([opt.loss_variables[0].variable_instance], self.parameters, self.workers,
                                    self.batch_size)
            if first:
                log.info(f"data parallel: {parallel.describe_slices()}; they meet at {parallel.describe_sync_points()}")
            return parallel
        if self.workers > 1 and first:
            log.info(f"data parallel: not used ({len(opt.loss_variables)} loss variables); one worker")
        return None

    def _train_iterations(self, opt, epoch: int, cut, skip, parallel) -> float:
        """One epoch's iterations in the epoch's data order; the mean cost."""
        size, batch = self.train_set.size, self.batch_size
        order = np.random.RandomState(epoch_seed(self.options.seed, epoch)).permutation(size) if self.train_set.shuffle \
            else np.arange(size)
        progress = self.options.progress and sys.stderr.isatty()
        report = ProgressReport(self.result_dir, log.info if self.options.progress and not progress else None)
        cost, started = 0.0, time.monotonic()
        bar = tqdm(range(self.iter_per_epoch), desc=f"epoch {epoch}/{self.epochs}", disable=not progress, leave=False,
                   unit="it")
        for i in bar:
            iteration = (epoch - 1) * self.iter_per_epoch + i
            idx = np.take(order, np.arange(i * batch, (i + 1) * batch), mode="wrap")
            if cut is not None:
                cut.d = self.features.values[idx]
            loss = train_step(opt, self.solvers, self.train_set.batch(idx, skip), iteration, skip=skip, parallel=parallel)
            if not math.isfinite(loss):
                self._diverged(epoch, f"iteration {i + 1}: the loss is {loss}")
            cost += loss
            report.update(epoch, self.epochs, i + 1, self.iter_per_epoch, cost / (i + 1), (i + 1) * batch, started)
        for group in self.solvers:
            for name, variable in group.parameters.items():
                if not np.isfinite(variable.d).all():
                    self._diverged(epoch, f"{name} holds non-finite values")
        return cost / self.iter_per_epoch

    def _diverged(self, epoch: int, what: str) -> None:
        """Training that produced inf/NaN stops with one line: nothing it saves from here on would mean anything."""
        raise NncToolsError(self.project_path, f"epoch {epoch}, {what}: training diverged (a learning rate, lr_scale or "
                            "multiplier too large?); stopped")

    def _monitor(self, info, epoch: int, record: EpochRecord) -> None:
        """The monitors due this epoch (``monitors.due_monitors``); their values and the validation accuracy go into
        ``record``."""
        interval = self.proto.training_config.monitor_interval or 10
        due = due_monitors(info.monitors, self.datasets, self.train_set, epoch, interval, self.epochs)
        record_monitors(due, record, self.monitor_cuts, self.monitor_features, self.batch_size, self.workers, self.budget,
                        self.result_dir / "cache" / "monitors")

    def _save(self, epoch: int, record: EpochRecord) -> None:
        """``results_current.nnp``, ``results.nnp`` when the epoch is the best so far, the reports and the checkpoint."""
        current = Project(self.project.proto, current_parameters())
        save_project(current, self.result_dir / "results_current.nnp")
        score = record.valid_error if record.valid_error is not None else record.cost
        if score < self.best[1] or not (self.result_dir / "results.nnp").exists():
            self.best = (epoch, score)
            save_project(current, self.result_dir / "results.nnp")
        write_reports(self.result_dir, self.history)
        save_checkpoint(self.checkpoint, epoch, self.solvers, self.history, self.best, self.options.seed,
                        {"epochs": self.epochs, "batch_size": self.batch_size, "seed": self.options.seed,
                         "phases": file_digest(self.options.phases) if self.options.phases is not None else None,
                         "frozen_bn": self.options.frozen_bn, "cache_frozen": self.options.cache_frozen,
                         "workers": self.workers, "solver": self.options.solver, "lr": self.options.lr,
                         "parameters": parameter_signature(self.project.proto),
                         "wall_seconds": self.wall_before + time.perf_counter() - self.started})

    # ------------------------------------------------------------------------------------------------------ the end

    def _finish(self, wall: float) -> TrainResult:
        validation = [self.uris[d.name] for d in self.proto.dataset if d.name != self.optimizer_proto.dataset_name[0]]
        plot_learning_curve(self.history, self.result_dir / "learning_curve.png")
        val_csv = validation[-1] if validation else None
        evaluation = evaluate(self.result_dir / "results.nnp", val_csv, self.result_dir,
                              batch_size=self.batch_size) if val_csv else None
        summary = self._summary(evaluation, wall)
        summary.onnx = write_results_onnx(self.result_dir, self.train_set.classes)
        write_summary(self.result_dir, summary)
        ProgressReport(self.result_dir, None).finish()
        return TrainResult(self.result_dir, self.history, self.best[0], summary, self.reinitialised)

    def _summary(self, evaluation: Optional[Evaluation], wall: float) -> RunSummary:
        shapes = {k: v.shape for k, v in nn.get_parameters(grad_only=False).items()}
        frozen = [n for n in self.frozen if not is_statistic(n)]
        return summarise(self.history, self.best[0], evaluation, wall, project=str(self.project_path),
                         batch_size=self.batch_size, seed=self.options.seed, frozen_parameters=frozen,
                         frozen_parameter_values=int(sum(np.prod(shapes[n]) for n in frozen if n in shapes)),
                         frozen_bn=self.options.frozen_bn, reinitialised=[list(r) for r in self.reinitialised],
                         context=self.options.context, workers=self.workers)
