"""The experiment's settings: ``experiments/*.yaml`` read into one record, flags on top."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import yaml

from ..errors import NncToolsError, reject_unknown_keys
from ..fileio import PathLike

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_KEYS = {"network", "source_recipe", "target_recipe", "overlay", "source_epochs", "target_epochs", "batch_size", "solver",
               "lr", "seeds", "synthetic_per_class"}


@dataclass
class ExperimentConfig:
    network: str = "mini_vggnet_mark2"
    source_recipe: str = "cifar10"
    target_recipe: str = "cifar100-aquatic"
    overlay: str = "networks/mini_vggnet_mark2.freeze-conv1-6.yaml"  # relative: to the config file, else this checkout
    source_epochs: int = 50
    target_epochs: int = 50
    batch_size: int = 64
    solver: str = "Momentum"
    lr: float = 0.01
    seeds: int = 1
    synthetic_per_class: Dict[str, Optional[int]] = field(default_factory=dict)  # {"source": N, "target": N} for --synthetic
    base: Path = Path(".")  # where relative paths in the config are resolved

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
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise NncToolsError(path, "no such experiment config") from None
        except (OSError, yaml.YAMLError) as e:
            raise NncToolsError(path, f"not a readable YAML config: {' '.join(str(e).split())}") from None
        if not isinstance(data, dict):
            raise NncToolsError(path, "an experiment config must be a mapping")
        reject_unknown_keys(data, CONFIG_KEYS, path)
        for key, value in data.items():
            setattr(config, key, value)
        config.base = path.resolve().parent
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    if config.seeds < 1 or config.source_epochs < 1 or config.target_epochs < 1 or config.batch_size < 1:
        raise NncToolsError(path, "seeds, epochs and batch_size must be positive")
    return config


