"""Small deterministic CIFAR-format archives, for demos and tests (no CIFAR data ships in any package).

Every class is a combination of three primitives drawn with numpy — a shape (disc, square, triangle, ring, cross,
horizontal bar, vertical bar, diamond), a colour (8) and a texture (plain, horizontal stripes, vertical stripes, checker,
dots) — over a noisy background, with random position, size and colour jitter per image. CIFAR-10-like and CIFAR-100-like
classes use different combinations of the same primitives, so low-level features learnt on one transfer to the other,
as they do between the real sets. Class names, superclasses, keys and dtypes are the real ones.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path
from typing import List

import numpy as np

from ..fileio import PathLike, atomic_output
from .cifar import CifarData, CifarSplit

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
CIFAR100_NAMES = sorted(n for names in SUPERCLASSES.values() for n in names)
COARSE_NAMES = sorted(SUPERCLASSES)

SHAPES = ["disc", "square", "triangle", "ring", "cross", "hbar", "vbar", "diamond"]
COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 80, 230], [230, 200, 40], [200, 60, 210], [40, 210, 210],
                    [240, 140, 30], [235, 235, 235]], dtype=np.float32)
TEXTURES = ["plain", "hstripes", "vstripes", "checker", "dots"]
_YY, _XX = np.mgrid[0:32, 0:32].astype(np.float32)


def class_primitives(kind: str) -> List[tuple]:
    """(shape, colour, texture) per class: distinct combinations, fixed by the set's name."""
    count = 10 if kind == "cifar10" else 100
    combinations = len(SHAPES) * len(COLOURS) * len(TEXTURES)
    combos = np.random.RandomState(10 if kind == "cifar10" else 100).choice(combinations, count, replace=False)
    return [(int(c) % len(SHAPES), (int(c) // len(SHAPES)) % len(COLOURS), int(c) // (len(SHAPES) * len(COLOURS))) for c in combos]


def _mask(shape: str, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = _YY - cy, _XX - cx
    if shape == "disc":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        return (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
    if shape == "triangle":
        return (dy <= r * 0.7) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "ring":
        d = np.sqrt(dy**2 + dx**2)
        return (d <= r) & (d >= r * 0.55)
    if shape == "cross":
        return ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r)) | ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r))
    if shape == "hbar":
        return (np.abs(dy) <= r * 0.35) & (np.abs(dx) <= r * 1.2)
    if shape == "vbar":
        return (np.abs(dx) <= r * 0.35) & (np.abs(dy) <= r * 1.2)
    return np.abs(dy) + np.abs(dx) <= r  # diamond


def _texture(texture: str, phase: int) -> np.ndarray:
    y, x = _YY.astype(int) + phase, _XX.astype(int) + phase
    if texture == "hstripes":
        return ((y // 2) % 2).astype(np.float32)
    if texture == "vstripes":
        return ((x // 2) % 2).astype(np.float32)
    if texture == "checker":
        return (((y // 3) + (x // 3)) % 2).astype(np.float32)
    if texture == "dots":
        return ((y % 4 < 2) & (x % 4 < 2)).astype(np.float32)
    return np.ones((32, 32), np.float32)


def render(primitive: tuple, rng: np.random.RandomState) -> np.ndarray:
    """One 3x32x32 uint8 image of a class."""
    shape, colour, texture = primitive
    background = rng.uniform(20, 110, size=3).astype(np.float32)
    image = np.broadcast_to(background[:, None, None], (3, 32, 32)).copy()
    mask = _mask(SHAPES[shape], rng.uniform(11, 21), rng.uniform(11, 21), rng.uniform(7, 12))
    tone = 0.55 + 0.45 * _texture(TEXTURES[texture], int(rng.randint(0, 4)))
    fg = np.clip(COLOURS[colour] + rng.uniform(-30, 30, size=3), 0, 255)
    image = np.where(mask[None], fg[:, None, None] * tone[None], image)
    image += rng.normal(0, 14, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate(kind: str, train_per_class: int, test_per_class: int, seed: int = 0) -> CifarData:
    """A deterministic CIFAR-10/100-like dataset with ``train_per_class`` / ``test_per_class`` images per class."""
    names = CIFAR10_NAMES if kind == "cifar10" else CIFAR100_NAMES
    primitives = class_primitives(kind)
    coarse_of = {fine: COARSE_NAMES.index(c) for c, fines in SUPERCLASSES.items() for fine in fines}

    def split(per_class: int, offset: int) -> CifarSplit:
        rng = np.random.RandomState(seed * 1000 + offset + (1 if kind == "cifar10" else 2))
        labels = np.tile(np.arange(len(names)), per_class)
        rng.shuffle(labels)
        images = np.stack([render(primitives[label], rng) for label in labels]) if len(labels) else np.zeros((0, 3, 32, 32), np.uint8)
        coarse = np.array([coarse_of[names[label]] for label in labels], dtype=np.int64) if kind == "cifar100" else None
        return CifarSplit(images, labels.astype(np.int64), coarse)

    return CifarData(kind, split(train_per_class, 0), split(test_per_class, 500), list(names),
                     list(COARSE_NAMES) if kind == "cifar100" else [], f"synthetic-{kind}")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _batch(split: CifarSplit, label_key: bytes, names: List[str], rows: slice, title: bytes) -> bytes:
    labels = split.labels[rows]
    batch = {
        b"batch_label": title,
        label_key: [int(v) for v in labels],
        b"data": np.ascontiguousarray(split.images[rows].reshape(-1, 3072)),
        b"filenames": [f"{names[int(v)]}_s_{i:06d}.png".encode() for i, v in enumerate(labels)],
    }
    if split.coarse is not None:
        batch = {b"filenames": batch[b"filenames"], b"batch_label": title, b"fine_labels": batch[label_key],
                 b"coarse_labels": [int(v) for v in split.coarse[rows]], b"data": batch[b"data"]}
    return pickle.dumps(batch, protocol=2)


def write_archive(data: CifarData, path: PathLike, fmt: str = "python") -> Path:
    """Write ``data`` as an official-layout ``.tar.gz`` (python pickles or binary records), atomically."""
    path = Path(path)
    with atomic_output(path) as temp, open(temp, "wb") as raw, gzip.GzipFile("", "wb", 6, raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        if fmt == "python" and data.kind == "cifar100":
            folder = "cifar-100-python"
            _add(tar, f"{folder}/train", _batch(data.train, b"fine_labels", data.label_names, slice(None), b"training batch 1 of 1"))
            _add(tar, f"{folder}/test", _batch(data.test, b"fine_labels", data.label_names, slice(None), b"testing batch 1 of 1"))
            meta = {b"fine_label_names": [n.encode() for n in data.label_names],
                    b"coarse_label_names": [n.encode() for n in data.coarse_names]}
            _add(tar, f"{folder}/meta", pickle.dumps(meta, protocol=2))
        elif fmt == "python":
            folder = "cifar-10-batches-py"
            bounds = np.linspace(0, len(data.train.labels), 6).astype(int)
            for i in range(5):
                _add(tar, f"{folder}/data_batch_{i + 1}",
                     _batch(data.train, b"labels", data.label_names, slice(bounds[i], bounds[i + 1]),
                            f"training batch {i + 1} of 5".encode()))
            _add(tar, f"{folder}/test_batch", _batch(data.test, b"labels", data.label_names, slice(None), b"testing batch 1 of 1"))
            meta = {b"label_names": [n.encode() for n in data.label_names], b"num_cases_per_batch": int(bounds[1]), b"num_vis": 3072}
            _add(tar, f"{folder}/batches.meta", pickle.dumps(meta, protocol=2))
        elif data.kind == "cifar100":
            folder = "cifar-100-binary"
            for name, split in (("train.bin", data.train), ("test.bin", data.test)):
                records = np.concatenate([split.coarse[:, None].astype(np.uint8), split.labels[:, None].astype(np.uint8),
                                          split.images.reshape(-1, 3072)], axis=1)
                _add(tar, f"{folder}/{name}", records.tobytes())
            _add(tar, f"{folder}/fine_label_names.txt", ("\n".join(data.label_names) + "\n").encode())
            _add(tar, f"{folder}/coarse_label_names.txt", ("\n".join(data.coarse_names) + "\n").encode())
        else:
            folder = "cifar-10-batches-bin"
            bounds = np.linspace(0, len(data.train.labels), 6).astype(int)

            def records(split: CifarSplit, rows: slice) -> bytes:
                return np.concatenate([split.labels[rows, None].astype(np.uint8), split.images[rows].reshape(-1, 3072)], axis=1).tobytes()

            for i in range(5):
                _add(tar, f"{folder}/data_batch_{i + 1}.bin", records(data.train, slice(bounds[i], bounds[i + 1])))
            _add(tar, f"{folder}/test_batch.bin", records(data.test, slice(None)))
            _add(tar, f"{folder}/batches.meta.txt", ("\n".join(data.label_names) + "\n").encode())
    return path
