"""Freeze overlays read and checked: a YAML file of ordered rules (``rules``, and the ``freeze`` / ``lr_multiplier``
shorthands), each naming layers or parameters and a multiplier. ``freeze`` applies them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from ..errors import NncToolsError, reject_unknown_keys
from ..fileio import PathLike
from ..formats.schema import FLOAT32_TINY, as_float32
from ..yamlfile import read_yaml

RULE_KEYS = {"match", "up_to", "params", "multiplier"}
DECAY_KEYS = {"decay", "from", "to", "params"}
TOP_KEYS = {"optimizers", "rules", "freeze", "lr_multiplier", "frozen_bn", "phases"}
PHASE_KEYS = {"epochs", "lr_scale", "optimizers", "rules", "freeze", "lr_multiplier", "frozen_bn"}
FROZEN_BN = ("inference", "batch")


@dataclass
class Rule:
    """One overlay rule: which parameters (``match`` glob or ``up_to`` layer, optional ``params`` filter) get which multiplier."""

    multiplier: float
    match: Optional[str] = None
    up_to: Optional[str] = None
    params: Optional[Tuple[str, ...]] = None
    where: str = ""
    # a decay rule (``decay: 0.7, from: Affine_3``, optional ``to``): the ``from`` layer keeps its multiplier and each
    # parameterised layer before it, back to ``to`` (or the first), gets the previous one's times ``decay``
    decay: Optional[float] = None
    start: Optional[str] = None  # ``from``
    to: Optional[str] = None


@dataclass
class Overlay:
    rules: List[Rule]
    optimizers: Optional[List[str]] = None
    path: Optional[Path] = None
    # inference: a Batch Normalization whose beta and gamma end frozen runs on its running statistics in the training
    # network too (BatchStat=False), so NNC and nnabla_cli keep them; batch: its batch statistics are left as they are
    frozen_bn: str = "inference"
    # phases: training in stages (``nnc-tl train --phases``), each an overlay of its own for some epochs; the overlay's
    # own rules are then the first phase's (what apply-freeze applies)
    phases: Optional[List["Phase"]] = None


@dataclass
class Phase:
    """One phase of a phased overlay: its epochs, its rules (applied to the project as it was) and a learning-rate scale."""

    epochs: int
    overlay: Overlay
    lr_scale: float = 1.0


def _multiplier(value: Any, path: Path, where: str) -> float:
    """A multiplier the project can hold: finite, >= 0, and the same kind of number as a float32 (1e300 would be stored
    as inf, 1e-320 as 0, i.e. frozen)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise NncToolsError(path, f"{where}: multiplier must be a finite number >= 0, got {value!r}")
    try:
        stored = as_float32(float(value))
    except OverflowError:
        stored = math.inf
    if not math.isfinite(stored) or (value > 0 and stored < FLOAT32_TINY):
        raise NncToolsError(path, f"{where}: multiplier {value!r} cannot be stored (a float32 holds {FLOAT32_TINY:g} to "
                            "3.4e+38)")
    return float(value)


def _pattern(value: Any, path: Path, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise NncToolsError(path, f"{where}: expected a layer or parameter name, got {value!r}")
    return value


def parse_overlay(data: Any, path: PathLike) -> Overlay:
    """Check an overlay's structure (keys, types, multipliers) and turn it into rules, in document order."""
    path = Path(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise NncToolsError(path, "an overlay must be a mapping with 'rules', 'freeze' or 'lr_multiplier'")
    reject_unknown_keys(data, TOP_KEYS, path)
    if "phases" in data:
        return _parse_phased(data, path)
    optimizers = data.get("optimizers")
    if optimizers is not None:
        if isinstance(optimizers, str):
            optimizers = [optimizers]
        if not isinstance(optimizers, list) or not all(isinstance(o, str) for o in optimizers):
            raise NncToolsError(path, "optimizers: expected a list of optimizer names")
    rules: List[Rule] = []
    for key, value in data.items():
        if key == "freeze":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list):
                raise NncToolsError(path, "freeze: expected a list of layer or parameter patterns")
            for i, pattern in enumerate(items):
                rules.append(Rule(0.0, match=_pattern(pattern, path, f"freeze[{i}]"), where=f"freeze[{i}]"))
        elif key == "lr_multiplier":
            if not isinstance(value, dict):
                raise NncToolsError(path, "lr_multiplier: expected a mapping PATTERN: VALUE")
            for pattern, mult in value.items():
                where = f"lr_multiplier[{pattern}]"
                rules.append(Rule(_multiplier(mult, path, where), match=_pattern(pattern, path, where), where=where))
        elif key == "rules":
            if not isinstance(value, list):
                raise NncToolsError(path, "rules: expected a list of rules")
            for i, item in enumerate(value):
                rules.append(_parse_rule(item, path, f"rules[{i}]"))
    if not rules:
        raise NncToolsError(path, "the overlay has no rules ('rules', 'freeze' or 'lr_multiplier')")
    frozen_bn = data.get("frozen_bn", "inference")
    if frozen_bn not in FROZEN_BN:
        raise NncToolsError(path, f"frozen_bn: expected inference or batch, got {frozen_bn!r}")
    return Overlay(rules, optimizers, path, frozen_bn)


def _parse_phased(data: dict, path: Path) -> Overlay:
    """``phases: [{epochs: N, lr_scale: S, rules/freeze/lr_multiplier/frozen_bn/optimizers …}, …]`` and nothing else."""
    others = sorted(set(data) - {"phases"})
    if others:
        raise NncToolsError(path, f"phases: give every rule inside a phase ('{others[0]}' stands beside them)")
    items = data["phases"]
    if not isinstance(items, list) or not items:
        raise NncToolsError(path, "phases: expected a list of phases, each with epochs and its rules")
    phases = []
    for i, item in enumerate(items):
        where = f"phases[{i}]"
        if not isinstance(item, dict):
            raise NncToolsError(path, f"{where}: expected a mapping with epochs and rules")
        reject_unknown_keys(item, PHASE_KEYS, path, where)
        epochs = item.get("epochs")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 1 << 20:
            raise NncToolsError(path, f"{where}: epochs must be a whole number from 1, got {epochs!r}")
        scale = item.get("lr_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise NncToolsError(path, f"{where}: lr_scale must be a finite number > 0, got {scale!r}")
        rules = {k: v for k, v in item.items() if k not in ("epochs", "lr_scale")}
        try:
            overlay = parse_overlay(rules, path)
        except NncToolsError as e:
            raise NncToolsError(path, f"{where}: {e.problem}") from None
        phases.append(Phase(epochs, overlay, float(scale)))
    first = phases[0].overlay
    return Overlay(first.rules, first.optimizers, path, first.frozen_bn, phases)


def _parse_params(item: dict, path: Path, where: str) -> Optional[Tuple[str, ...]]:
    params = item.get("params")
    if params is None:
        return None
    if isinstance(params, str):
        params = [params]
    if not isinstance(params, list) or not params or not all(isinstance(p, str) and p for p in params):
        raise NncToolsError(path, f"{where}: params must be a list of parameter names such as [W, b]")
    return tuple(params)


def _parse_decay(item: dict, path: Path, where: str) -> Rule:
    reject_unknown_keys(item, DECAY_KEYS, path, where)
    factor = item["decay"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
        raise NncToolsError(path, f"{where}: decay must be a finite number > 0, got {factor!r}")
    if "from" not in item:
        raise NncToolsError(path, f"{where}: a decay rule needs 'from' (the layer that keeps its multiplier)")
    return Rule(1.0, params=_parse_params(item, path, where), where=where, decay=float(factor),
                start=_pattern(item["from"], path, where), to=_pattern(item["to"], path, where) if "to" in item else None)


def _parse_rule(item: Any, path: Path, where: str) -> Rule:
    if not isinstance(item, dict):
        raise NncToolsError(path, f"{where}: expected a mapping with match or up_to, and multiplier")
    if "decay" in item:
        return _parse_decay(item, path, where)
    reject_unknown_keys(item, RULE_KEYS, path, where)
    if ("match" in item) == ("up_to" in item):
        raise NncToolsError(path, f"{where}: give exactly one of 'match' and 'up_to'")
    if "multiplier" not in item:
        raise NncToolsError(path, f"{where}: 'multiplier' is missing")
    params = _parse_params(item, path, where)
    return Rule(
        _multiplier(item["multiplier"], path, where),
        match=_pattern(item["match"], path, where) if "match" in item else None,
        up_to=_pattern(item["up_to"], path, where) if "up_to" in item else None,
        params=params,
        where=where,
    )


def load_overlay(path: PathLike) -> Overlay:
    """Read an overlay YAML file (``read_yaml``: safe, no duplicate keys or aliases) and check its structure."""
    return parse_overlay(read_yaml(path, "overlay file"), path)


def find_overlay(project: PathLike, cwd: PathLike = ".") -> Path:
    """The overlay used without ``-c``: ``<stem>.freeze.yaml`` beside the project, else ``./freeze.yaml``."""
    project = Path(project)
    candidates = [project.with_name(project.stem + ".freeze.yaml"), Path(cwd) / "freeze.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise NncToolsError(project, f"no overlay given (-c) and none found at {' or '.join(str(c) for c in candidates)}")
