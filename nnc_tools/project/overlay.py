"""Freeze overlays read and checked: a YAML file of ordered rules (``rules``, and the ``freeze`` / ``lr_multiplier``
shorthands), each naming layers or parameters and a multiplier. ``freeze`` applies them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from ..errors import NncToolsError, reject_unknown_keys
from ..fileio import PathLike
from ..yamlfile import finite_number, name, names, one_of, read_yaml, whole_number
from .rules import MatchRule, Rule, parse_multiplier, parse_rule

TOP_KEYS = {"optimizers", "rules", "freeze", "lr_multiplier", "frozen_bn", "phases"}
PHASE_KEYS = {"epochs", "lr_scale", "optimizers", "rules", "freeze", "lr_multiplier", "frozen_bn"}
FROZEN_BN = ("inference", "batch")


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


def parse_overlay(data: Any, path: PathLike) -> Overlay:
    """Check an overlay's structure (keys, types, multipliers) and turn it into rules, in document order: ``rules``
    (each of a kind in ``rules.RULE_KINDS``) and the shorthands ``freeze`` and ``lr_multiplier`` (match rules)."""
    path = Path(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise NncToolsError(path, "an overlay must be a mapping with 'rules', 'freeze' or 'lr_multiplier'")
    reject_unknown_keys(data, TOP_KEYS, path)
    if "phases" in data:
        return _parse_phased(data, path)
    optimizers = names(data["optimizers"], path, "optimizers", "a list of optimizer names") if "optimizers" in data else None
    rules: List[Rule] = []
    for key, value in data.items():
        if key == "freeze":
            patterns = names(value, path, "freeze", "a list of layer or parameter patterns")
            rules += [MatchRule(None, f"freeze[{i}]", pattern, 0.0) for i, pattern in enumerate(patterns)]
        elif key == "lr_multiplier":
            if not isinstance(value, dict):
                raise NncToolsError(path, "lr_multiplier: expected a mapping PATTERN: VALUE")
            for pattern, multiplier in value.items():
                where = f"lr_multiplier[{pattern}]"
                rules.append(MatchRule(None, where, name(pattern, path, where, "a layer or parameter name"),
                                       parse_multiplier(multiplier, path, where)))
        elif key == "rules":
            if not isinstance(value, list):
                raise NncToolsError(path, "rules: expected a list of rules")
            rules += [parse_rule(item, path, f"rules[{i}]") for i, item in enumerate(value)]
    if not rules:
        raise NncToolsError(path, "the overlay has no rules ('rules', 'freeze' or 'lr_multiplier')")
    return Overlay(rules, optimizers, path, one_of(data.get("frozen_bn", "inference"), FROZEN_BN, path, "frozen_bn"))


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
        epochs = whole_number(item.get("epochs"), path, f"{where}.epochs")
        scale = finite_number(item.get("lr_scale", 1.0), path, f"{where}.lr_scale")
        rules = {k: v for k, v in item.items() if k not in ("epochs", "lr_scale")}
        try:
            overlay = parse_overlay(rules, path)
        except NncToolsError as e:
            raise NncToolsError(path, f"{where}: {e.problem}") from None
        phases.append(Phase(epochs, overlay, scale))
    first = phases[0].overlay
    return Overlay(first.rules, first.optimizers, path, first.frozen_bn, phases)


# Overlays shipped with the tool, given by name where a file is expected (a file of that name wins): NNC's
# transfer-learning plugin's two --train_param modes. Unlike the plugin, a frozen Batch Normalization runs on its
# running statistics (frozen_bn: inference), so the backbone it freezes does not drift.
SHIPPED = {
    # only the head trains (a linear probe): every layer at 1, then all but the last at 0 (later rules win)
    "last-fc-only": {"rules": [{"all_but_last": 0, "multiplier": 1}, {"all_but_last": 1, "multiplier": 0}]},
    "all": {"rules": [{"match": "*", "multiplier": 1}]},  # every layer trains at the full rate (fine-tuning)
}


def load_overlay(path: PathLike) -> Overlay:
    """Read an overlay YAML file (``read_yaml``: safe, no duplicate keys or aliases) and check its structure; a name in
    ``SHIPPED`` with no such file is that overlay."""
    if str(path) in SHIPPED and not Path(path).exists():
        return parse_overlay(SHIPPED[str(path)], path)
    return parse_overlay(read_yaml(path, "overlay file"), path)


def find_overlay(project: PathLike, cwd: PathLike = ".") -> Path:
    """The overlay used without ``-c``: ``<stem>.freeze.yaml`` beside the project, else ``./freeze.yaml``."""
    project = Path(project)
    candidates = [project.with_name(project.stem + ".freeze.yaml"), Path(cwd) / "freeze.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise NncToolsError(project, f"no overlay given (-c) and none found at {' or '.join(str(c) for c in candidates)}")
