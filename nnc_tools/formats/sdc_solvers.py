"""An ``[Optimizer_i]`` section's solver and learning-rate schedule as NNC's converter writes them into NNabla's
``Solver`` message (NNC's solver catalogue, ``settings/NNabla/solver_component.txt``, read and written in our form)."""

from __future__ import annotations

from typing import Dict

from ..errors import NncToolsError

# NNC's parameter names (``SolverParameterName_k``) -> the ``*_param`` field.
PARAMETER_FIELDS = {"Alpha": "alpha", "Beta1": "beta1", "Beta2": "beta2", "Epsilon": "eps", "LearningRate": "lr",
                    "Momentum": "momentum", "Decay": "decay", "Weight Decay": "wd", "AMSGrad": "amsgrad",
                    "WD Decouple": "weight_decouple", "Fixed Decay": "fixed_decay", "Rectify": "rectify",
                    "FinalLR": "final_lr", "Gamma": "gamma", "Coefficient": "coefficient"}
SOLVERS = ("AdaBelief", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "AdaBound", "AMSGRAD", "AMSBound", "Lars",
           "Momentum", "Nesterov", "RMSprop", "Sgd", "SgdW")


def set_solver(sdc, solver, items: Dict[str, str], config) -> None:
    """Fill ``solver`` from one ``[Optimizer_i]`` section (``config``: the training config, for epoch counts)."""
    name = items.get("SolverName", "Adam")
    if name not in SOLVERS:
        raise NncToolsError(sdc.path, f"optimizer {items.get('Optimizer_Name', '?')}: solver {name!r} is not one NNC "
                            f"has ({', '.join(SOLVERS)})")
    solver.type = name
    solver.weight_decay = _float(sdc, items.get("WeightDecay", "0"), "WeightDecay")
    message = getattr(solver, f"{name.lower()}_param")
    message.SetInParent()
    for k in range(int(items.get("SolverParameterNum", "0") or 0)):
        key = items.get(f"SolverParameterName_{k}", "")
        if key not in PARAMETER_FIELDS:
            raise NncToolsError(sdc.path, f"optimizer {items.get('Optimizer_Name', '?')}: {name} has no parameter {key!r}")
        field = message.DESCRIPTOR.fields_by_name[PARAMETER_FIELDS[key]]
        value = _float(sdc, items.get(f"SolverParameter_{k}", "0"), key)
        setattr(message, field.name, bool(value) if field.type == field.TYPE_BOOL else value)
    _schedule(sdc, solver, items, config)


def _float(sdc, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise NncToolsError(sdc.path, f"{what}={text!r} is not a number") from None


def _schedule(sdc, solver, items: Dict[str, str], config) -> None:
    """NNC's intervals count epochs with ``LearningRateUpdateIntervalUnit=0``, else (1, or absent in older projects)
    iterations; the converter writes iterations. Cosine and Polynomial run over the whole training."""
    kind = items.get("LearningRateScheduler", "Exponential")
    gamma = _float(sdc, items.get("LearningRateMultiplier", "1"), "LearningRateMultiplier")
    interval = int(_float(sdc, items.get("LearningRateUpdateInterval", "1"), "LearningRateUpdateInterval"))
    per_epoch = 1 if items.get("LearningRateUpdateIntervalUnit", "1") == "1" else config.iter_per_epoch
    interval *= per_epoch  # 0 when the project records no data count (NumData=0): the converter writes 0 too
    whole = config.max_epoch * config.iter_per_epoch
    solver.lr_scheduler_type = kind
    if kind == "Exponential":
        solver.exponential_scheduler_param.gamma = gamma
        solver.exponential_scheduler_param.iter_interval = interval
        solver.lr_decay = gamma
        solver.lr_decay_interval = interval
    elif kind == "Cosine":
        solver.cosine_scheduler_param.max_iter = whole
    elif kind == "Polynomial":
        solver.polynomial_scheduler_param.max_iter = whole
        solver.polynomial_scheduler_param.power = _float(sdc, items.get("LearningRatePower", "1"), "LearningRatePower")
    elif kind == "Step":
        solver.step_scheduler_param.gamma = gamma
        steps = items.get("LearningRateSteps", "")
        solver.step_scheduler_param.iter_steps.extend(int(_float(sdc, s, "LearningRateSteps"))
                                                      for s in steps.split(",") if s.strip())
    else:
        raise NncToolsError(sdc.path, f"optimizer {items.get('Optimizer_Name', '?')}: learning-rate scheduler {kind!r} "
                            "is not one NNC has (Exponential, Step, Cosine, Polynomial)")
    solver.lr_warmup_scheduler_type = items.get("LearningRateWarmupScheduler", "None")
