"""The experiment's settings: ``experiments/*.yaml`` read into one record, flags on top."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Union

from ..errors import NncToolsError, reject_unknown_keys
from ..fileio import PathLike
from ..yamlfile import MAX_COUNT, finite_number, name, names, read_yaml, whole_number

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_KEYS = {"network", "source_recipe", "target_recipe", "overlay", "source_epochs", "target_epochs", "batch_size", "solver",
               "lr", "seeds", "synthetic_per_class", "source_project", "source_data", "target_data", "arms", "fine_tune",
               "monitor_interval"}
ARMS = ("scratch", "transfer", "fine-tune")


@dataclass
class ExperimentConfig:
    network: str = "mini_vggnet_mark2"
    source_recipe: str = "cifar10"
    target_recipe: str = "cifar100-aquatic"
    overlay: str = "networks/mini_vggnet_mark2.freeze-conv1-6.yaml"  # relative: to the config file, else this checkout
    source_epochs: int = 10  # the published source model had 10 epochs of CIFAR-10
    target_epochs: int = 50
    batch_size: int = 64
    solver: str = "Momentum"
    lr: float = 0.01
    seeds: int = 1
    synthetic_per_class: Dict[str, Optional[int]] = field(default_factory=dict)  # {"source": N, "target": N} for --synthetic
    source_project: Optional[str] = None  # the user's own trained project (no pretraining; see run_transfer)
    # the user's own NNC dataset CSVs in place of a recipe: a folder with training/validation/test.csv, or a mapping
    source_data: Optional[Union[str, Dict[str, str]]] = None
    target_data: Optional[Union[str, Dict[str, str]]] = None
    # the target runs compared: from scratch, transfer (the overlay, frozen), fine-tune (the fine_tune phases overlay)
    arms: List[str] = field(default_factory=lambda: ["scratch", "transfer"])
    fine_tune: Optional[str] = None
    # the training-set monitor's interval in epochs (it also runs at a run's end); None: about ten points over a run
    monitor_interval: Optional[int] = None
    base: Path = Path(".")  # where relative paths in the config are resolved
    given: FrozenSet[str] = frozenset()  # the settings the config file names
    flags: FrozenSet[str] = frozenset()  # the settings flags gave

    def path(self, value: str) -> Path:
        """A path from the config: relative to the config's folder, else to this checkout (networks/, datasets/)."""
        p = Path(value)
        if p.is_absolute():
            return p
        for root in (self.base, REPO_ROOT):
            if (root / p).exists():
                return root / p
        return self.base / p


def load_config(path: Optional[PathLike], **overrides) -> ExperimentConfig:
    """The experiment's settings: defaults (the reference experiment), then the YAML file, then flags."""
    config = ExperimentConfig()
    if path is not None:
        path = Path(path)
        data = read_yaml(path, "experiment config")
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise NncToolsError(path, "an experiment config must be a mapping")
        reject_unknown_keys(data, CONFIG_KEYS, path)
        for key, value in data.items():
            setattr(config, key, _checked(key, value, path))
        config.base = path.resolve().parent
        config.given = frozenset(data)
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, _checked(key, value, path))
    config.flags = frozenset(k for k, v in overrides.items() if v is not None)
    return config


# The largest batch NNabla is asked to allocate (a 3x32x32 float batch of this size is 800 MB).
MAX_BATCH = 1 << 16


def _checked(key: str, value, path) -> object:
    """A setting of the right type and range (the YAML reader's checks): counts are whole numbers >= 1 (the batch at most
    MAX_BATCH), the learning rate a finite number > 0, names are strings, ``synthetic_per_class`` maps source/target to
    counts."""
    if key in ("source_epochs", "target_epochs", "batch_size", "seeds", "monitor_interval"):
        return whole_number(value, path, key, high=MAX_BATCH if key == "batch_size" else MAX_COUNT)
    if key == "lr":
        return finite_number(value, path, key)
    if key == "synthetic_per_class":
        if not isinstance(value, dict) or set(value) - {"source", "target"}:
            raise NncToolsError(path, f"synthetic_per_class: expected {{source: N, target: N}} with N >= 1, got {value!r}")
        return {role: None if n is None else whole_number(n, path, f"synthetic_per_class.{role}") for role, n in value.items()}
    if key == "arms":
        arms = names(value, path, key, f"a list of distinct arms from {', '.join(ARMS)}")
        if len(set(arms)) != len(arms) or isinstance(value, str) or set(arms) - set(ARMS):
            raise NncToolsError(path, f"arms: expected a list of distinct arms from {', '.join(ARMS)}, got {value!r}")
        return arms
    if key in ("source_data", "target_data"):
        if not (isinstance(value, str) and value) and not (
                isinstance(value, dict) and set(value) == {"training", "validation", "test"}
                and all(isinstance(v, str) and v for v in value.values())):
            raise NncToolsError(path, f"{key}: expected a folder holding training.csv, validation.csv and test.csv, or "
                                f"{{training: CSV, validation: CSV, test: CSV}}, got {value!r}")
        return value
    return name(value, path, key)
