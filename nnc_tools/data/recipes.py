"""Dataset recipes, and CIFAR archives turned into NNC-format dataset folders (PNGs plus CSVs).

A recipe picks classes (fine names or superclasses, in label order), splits each class's official training images into
training/validation (stratified, seeded shuffle) or takes the official test set for validation, and says whether to
convert the official test set. Output, as NNC's CIFAR plugin writes it: ``OUT/training/<class>/<i>.png`` …, CSVs with
header ``x:image,y:label;<name0>;…`` and rows ``./training/beaver/0.png,0``.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import hashlib
import io
import json
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import NncToolsError, reject_unknown_keys
from ..fileio import PathLike, atomic_output
from ..yamlfile import names, one_of, read_yaml, whole_number
from .cache import cache_dir
from .cifar import CifarData, read_cifar
from .download import fetch, is_url

FORMAT_VERSION = 1
MANIFEST = ".nnc-tl-dataset.json"
SPLITS = ("training", "validation", "test")
AQUATIC = ["beaver", "dolphin", "otter", "seal", "whale", "aquarium_fish", "flatfish", "ray", "shark", "trout"]
SYNTHETIC_TRAIN_PER_CLASS = {"cifar10": 500, "cifar100": 50}  # a tenth of the real 5,000 / 500; test is a fifth of it

RECIPE_KEYS = {"name", "source", "classes", "superclasses", "split", "validation", "test", "max_per_class"}


@dataclass
class Recipe:
    """What to build from which CIFAR set."""

    name: str
    source: str  # "cifar10" or "cifar100"
    classes: Optional[List[str]] = None
    superclasses: Optional[List[str]] = None
    split: Dict[str, float] = field(default_factory=lambda: {"training": 1.0})
    validation: str = "split"  # "split": from the official training set; "test": the official test set
    test: bool = True
    max_per_class: Optional[int] = None
    file: Optional[Path] = field(default=None, compare=False)  # the YAML file it was read from, for messages

    @property
    def where(self):
        """What a message about the recipe names: its file, or (built in) its name."""
        return self.file if self.file is not None else self.name


BUILTIN = {
    "cifar10": Recipe("cifar10", "cifar10", validation="test"),
    "cifar100": Recipe("cifar100", "cifar100", validation="test"),
    "cifar100-aquatic": Recipe("cifar100-aquatic", "cifar100", classes=list(AQUATIC), split={"training": 0.8, "validation": 0.2}),
}


def parse_recipe(data: Any, where: PathLike) -> Recipe:
    """Check a recipe mapping (from YAML) and turn it into a :class:`Recipe`."""
    if not isinstance(data, dict):
        raise NncToolsError(where, "a recipe must be a mapping")
    reject_unknown_keys(data, RECIPE_KEYS, where)
    source = one_of(data.get("source"), ("cifar10", "cifar100"), where, "source")
    for key in ("classes", "superclasses"):
        if data.get(key) is not None and isinstance(data[key], str):
            raise NncToolsError(where, f"{key}: expected a list of names, got {data[key]!r}")
        if data.get(key) is not None:
            names(data[key], where, key)
    if data.get("classes") and data.get("superclasses"):
        raise NncToolsError(where, "give classes or superclasses, not both")
    split = data.get("split", {"training": 1.0})
    if not isinstance(split, dict) or set(split) - {"training", "validation"} or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in split.values()
    ) or sum(split.values()) > 1 + 1e-9 or not split.get("training"):
        raise NncToolsError(where, "split: expected {training: F, validation: F} with fractions in [0, 1] summing to at most 1")
    validation = one_of(data.get("validation", "split"), ("split", "test"), where, "validation")
    if validation == "test" and split.get("validation"):
        raise NncToolsError(where, "validation: test takes the official test set; drop split.validation")
    cap = data.get("max_per_class")
    if cap is not None:
        whole_number(cap, where, "max_per_class")
    test = data.get("test", True)
    if not isinstance(test, bool):
        raise NncToolsError(where, "test: expected true or false")
    return Recipe(str(data.get("name") or Path(str(where)).stem), source, data.get("classes"), data.get("superclasses"),
                  {k: float(v) for k, v in split.items()}, validation, test, cap, Path(str(where)))


def load_recipe(name_or_path: str) -> Recipe:
    """A built-in recipe by name, or a YAML recipe file."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        close = difflib.get_close_matches(name_or_path, list(BUILTIN), n=3, cutoff=0.4)
        raise NncToolsError(path, f"no such recipe file or built-in recipe (built-in: {', '.join(BUILTIN)}"
                            + (f"; closest: {', '.join(close)})" if close else ")"))
    return parse_recipe(read_yaml(path, "dataset recipe"), path)


# ------------------------------------------------------------------------------------------------------------ planning


@dataclass
class Item:
    """One output image: where it goes and which source image it is."""

    split: str
    label: int
    path: str  # relative to the output folder, e.g. training/beaver/0.png
    source_split: str  # "train" or "test" of the archive
    source_index: int


def class_list(recipe: Recipe, data: CifarData) -> List[int]:
    """Source label indices in the recipe's label order; unknown names are an error naming the nearest ones."""
    names = data.label_names
    for key in ("classes", "superclasses"):
        given = getattr(recipe, key) or []
        repeated = sorted({n for n in given if given.count(n) > 1})
        if repeated:
            raise NncToolsError(recipe.where, f"{key}: '{repeated[0]}' is listed twice (two classes would share one folder)")
    if recipe.classes:
        chosen = []
        for name in recipe.classes:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
                raise NncToolsError(recipe.where, f"unknown class '{name}' in {data.kind} (closest: {', '.join(close) or 'none'})")
            chosen.append(names.index(name))
        return chosen
    if recipe.superclasses:
        if not data.coarse_names or data.train.coarse is None:
            raise NncToolsError(recipe.where, f"{data.kind} has no superclasses")
        chosen = []
        for coarse in recipe.superclasses:
            if coarse not in data.coarse_names:
                close = difflib.get_close_matches(coarse, data.coarse_names, n=3, cutoff=0.5)
                raise NncToolsError(recipe.where, f"unknown superclass '{coarse}' (closest: {', '.join(close) or 'none'})")
            c = data.coarse_names.index(coarse)
            chosen += sorted({int(f) for f in data.train.labels[data.train.coarse == c]})
        return chosen
    return list(range(len(names)))


def assign_images(recipe: Recipe, data: CifarData, seed: int) -> Tuple[List[str], Dict[str, List[Item]]]:
    """Which source image goes where: class names in label order, and the items of each split in row order."""
    classes = class_list(recipe, data)
    names = [data.label_names[c] for c in classes]
    rng = np.random.RandomState(seed)
    chosen: Dict[str, List[Tuple[int, str, int]]] = {s: [] for s in SPLITS}
    for label, source_label in enumerate(classes):
        indices = np.flatnonzero(data.train.labels == source_label)
        order = rng.permutation(len(indices))
        if recipe.max_per_class is not None:
            order = order[: recipe.max_per_class]
        n_train = int(round(len(order) * recipe.split.get("training", 0)))
        n_val = int(round(len(order) * recipe.split.get("validation", 0))) if recipe.validation == "split" else 0
        n_val = min(n_val, len(order) - n_train)
        for split, part in (("training", order[:n_train]), ("validation", order[n_train:n_train + n_val])):
            chosen[split] += [(int(i), "train", label) for i in sorted(indices[part])]
    if recipe.test or recipe.validation == "test":
        for label, source_label in enumerate(classes):
            chosen["test"] += [(int(i), "test", label) for i in np.flatnonzero(data.test.labels == source_label)]
    items: Dict[str, List[Item]] = {}
    for split in SPLITS:
        rows = sorted(chosen[split])  # archive order
        counters: Dict[int, int] = {}
        items[split] = []
        for index, source_split, label in rows:
            n = counters.get(label, 0)
            counters[label] = n + 1
            items[split].append(Item(split, label, f"{split}/{names[label]}/{n}.png", source_split, index))
    return names, items


# ------------------------------------------------------------------------------------------------------------- writing


def encode_png(image: np.ndarray) -> bytes:
    """A CHW uint8 image as PNG bytes (deterministic for the same Pillow)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _write_png(task: Tuple[str, np.ndarray]) -> int:
    path, image = task
    target = Path(path)
    if target.exists():
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as temp:
        temp.write_bytes(encode_png(image))
    return 1


def _write_csv(path: Path, names: List[str], rows: List[Tuple[str, int]]) -> None:
    with atomic_output(path) as temp, open(temp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["x:image", "y:label;" + ";".join(names)])
        for path_, label in rows:
            writer.writerow([f"./{path_}", label])


@dataclass
class BuildResult:
    outdir: Path
    classes: List[str]
    counts: Dict[str, int]
    per_class: Dict[str, Dict[str, int]]
    written: int
    up_to_date: bool
    csvs: List[Path]


def fingerprint(recipe: Recipe, data: CifarData, seed: int) -> str:
    what = {k: v for k, v in asdict(recipe).items() if k != "file"}  # the same recipe read from another file is the same
    text = json.dumps({"recipe": what, "seed": seed, "format": FORMAT_VERSION, "data": data.fingerprint()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _files_a_build_writes(outdir: Path) -> List[Path]:
    """What a build writes into OUTDIR (its manifest, split folders and CSVs), those that exist."""
    return [p for p in [outdir / MANIFEST, *(outdir / s for s in SPLITS), *(outdir / f"{s}.csv" for s in SPLITS)] if p.exists()]


def build(recipe: Recipe, data: CifarData, outdir: PathLike, seed: int = 0, workers: Optional[int] = None, force: bool = False,
          progress: bool = True) -> BuildResult:
    """Write the dataset; a second run with the same inputs does nothing, an interrupted one resumes."""
    outdir = Path(outdir)
    names, items = assign_images(recipe, data, seed)
    csv_splits = [s for s in SPLITS if s != "test" or recipe.test]
    csv_rows = {s: [(i.path, i.label) for i in items[s]] for s in SPLITS}
    if recipe.validation == "test":
        csv_rows["validation"] = csv_rows["test"]
        if "validation" not in csv_splits:
            csv_splits.insert(1, "validation")
    counts = {s: len(csv_rows[s]) for s in csv_splits}
    per_class = {s: {n: sum(1 for _, label in csv_rows[s] if label == k) for k, n in enumerate(names)} for s in csv_splits}
    csvs = [outdir / f"{s}.csv" for s in csv_splits]
    digest = fingerprint(recipe, data, seed)
    manifest_path = outdir / MANIFEST
    manifest = {}
    if manifest_path.is_file():
        with contextlib.suppress(ValueError, OSError):
            manifest = json.loads(manifest_path.read_text())
    if manifest.get("fingerprint") == digest and manifest.get("complete") and all(p.is_file() for p in csvs):
        return BuildResult(outdir, names, counts, per_class, 0, True, csvs)
    if manifest.get("fingerprint") != digest and _files_a_build_writes(outdir):
        if not force:
            raise NncToolsError(outdir, "holds a different dataset (or one nnc-tl did not write); use --force to replace it")
        for path in _files_a_build_writes(outdir):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    outdir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:  # temporary files of a run that was killed
        for stale in (outdir / split).glob("*/.*.tmp") if (outdir / split).is_dir() else ():
            stale.unlink()
    record = {"fingerprint": digest, "complete": False, "recipe": recipe.name, "seed": seed, "source": data.source, "counts": counts}
    with atomic_output(manifest_path) as temp:
        temp.write_text(json.dumps(record, indent=2) + "\n")

    tasks = [(str(outdir / item.path), (data.train if item.source_split == "train" else data.test).images[item.source_index])
             for split in SPLITS for item in items[split]]
    workers = workers or os.cpu_count() or 1
    written = 0
    with tqdm(total=len(tasks), unit="img", desc=f"{recipe.name} -> {outdir}", disable=None if progress else True) as bar:
        if workers == 1:
            for task in tasks:
                written += _write_png(task)
                bar.update()
        else:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for done in pool.imap_unordered(_write_png, tasks, chunksize=64):
                    written += done
                    bar.update()
    for split, path in zip(csv_splits, csvs):
        _write_csv(path, names, csv_rows[split])
    record["complete"] = True
    with atomic_output(manifest_path) as temp:
        temp.write_text(json.dumps(record, indent=2) + "\n")
    return BuildResult(outdir, names, counts, per_class, written, False, csvs)


# ------------------------------------------------------------------------------------------------------------ sources


def synthetic_archive(kind: str, train_per_class: Optional[int] = None, seed: int = 0) -> Path:
    """The deterministic synthetic archive for ``kind``, generated once into the cache."""
    from .synthetic import generate, write_archive

    per_class = train_per_class or SYNTHETIC_TRAIN_PER_CLASS[kind]
    test_per_class = max(1, per_class // 5)
    folder = "cifar-10" if kind == "cifar10" else "cifar-100"
    path = cache_dir() / f"synthetic-{folder}-python-{per_class}-{test_per_class}-s{seed}.tar.gz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_archive(generate(kind, per_class, test_per_class, seed), path)
    return path


def resolve_source(recipe: Recipe, source: Optional[str], synthetic: bool, verify: bool, synthetic_per_class: Optional[int] = None) -> Path:
    """Where the archive is: a path, a URL fetched into the cache, the synthetic archive, or a cached official one."""
    if synthetic:
        return synthetic_archive(recipe.source, synthetic_per_class)
    if source:
        return fetch(source, verify) if is_url(source) else Path(source)
    official = "cifar-10-python.tar.gz" if recipe.source == "cifar10" else "cifar-100-python.tar.gz"
    cached = cache_dir() / official
    if cached.is_file():
        return cached
    raise NncToolsError(None, f"recipe {recipe.name} needs {official}: give it as a path or URL (--source for nnc-tl dataset, "
                        f"--{recipe.source} for nnc-tl experiment; official: https://www.cs.toronto.edu/~kriz/{official}), "
                        "or use --synthetic for generated data")


def make_dataset(recipe_name: str, outdir: PathLike, *, source: Optional[str] = None, synthetic: bool = False, seed: int = 0,
                 workers: Optional[int] = None, verify: bool = True, force: bool = False,
                 synthetic_per_class: Optional[int] = None) -> BuildResult:
    """`nnc-tl dataset`: recipe + source archive -> NNC dataset folder."""
    recipe = load_recipe(recipe_name)
    archive = resolve_source(recipe, source, synthetic, verify, synthetic_per_class)
    data = read_cifar(archive, verify=verify)
    if data.kind != recipe.source:
        raise NncToolsError(archive, f"is {data.kind}, but recipe {recipe.name} wants {recipe.source}")
    return build(recipe, data, outdir, seed=seed, workers=workers, force=force)
