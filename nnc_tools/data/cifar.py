"""The official CIFAR-10/100 archives (python pickles or binary records), as ``.tar.gz`` or extracted folders.

Members are read straight from the tar stream, never extracted to disk. The python archives are pickles: they are loaded
with :class:`RestrictedUnpickler`, which admits only what those files contain (dicts, lists, bytes, str, ints and numpy's
array reconstruction) and refuses anything else before it can run.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import NncToolsError
from ..fileio import PathLike, file_digest

OFFICIAL_MD5 = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
    "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
    "cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8",
}
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/"

# Where each layout keeps its files (the folder inside the archive, and the members we read).
LAYOUTS = {
    ("cifar100", "python"): ("cifar-100-python", ["train", "test", "meta"]),
    ("cifar10", "python"): ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]),
    ("cifar100", "binary"): ("cifar-100-binary", ["train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt"]),
    ("cifar10", "binary"): ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin", "batches.meta.txt"]),
}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python files; any global beyond numpy's array reconstruction is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load '{module}.{name}' (a CIFAR file holds only data)")


def restricted_loads(data: bytes, where: str):
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise NncToolsError(where, f"unsafe or damaged pickle: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError, MemoryError) as e:
        raise NncToolsError(where, f"damaged pickle: {e}") from None


@dataclass
class CifarSplit:
    images: np.ndarray  # uint8, N x 3 x 32 x 32
    labels: np.ndarray  # fine labels, int64
    coarse: Optional[np.ndarray] = None


@dataclass
class CifarData:
    kind: str  # "cifar10" or "cifar100"
    train: CifarSplit
    test: CifarSplit
    label_names: List[str]
    coarse_names: List[str]
    source: str

    def fingerprint(self) -> str:
        """A digest of every image and label, to tell one dataset from another."""
        h = hashlib.sha256(self.kind.encode())
        for split in (self.train, self.test):
            h.update(np.ascontiguousarray(split.images).tobytes())
            h.update(np.asarray(split.labels, dtype=np.int64).tobytes())
        h.update("\n".join(self.label_names).encode())
        return h.hexdigest()


def verify_official(path: Path, name: Optional[str] = None) -> None:
    """When ``path`` (or ``name``, its final name) is an official archive name, its md5 must be the official one."""
    expected = OFFICIAL_MD5.get(name or path.name)
    if expected is None:
        return
    actual = file_digest(path, "md5")
    if actual != expected:
        raise NncToolsError(path, f"md5 {actual} is not the official {expected} (damaged or not the official archive; "
                            "--no-verify skips this)")


class _Members:
    """Read named members from a .tar(.gz) stream or from an extracted folder."""

    def __init__(self, source: Path):
        self.source = source

    def read(self, wanted: List[str]) -> Dict[str, bytes]:
        found: Dict[str, bytes] = {}
        if self.source.is_dir():
            for name in wanted:
                matches = [p for p in (self.source / name, *self.source.glob(f"*/{name}")) if p.is_file()]
                if matches:
                    found[name] = matches[0].read_bytes()
            return found
        try:
            with tarfile.open(self.source, "r:*") as tar:
                for member in tar:
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in wanted and base not in found:
                        f = tar.extractfile(member)
                        found[base] = f.read() if f else b""
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise NncToolsError(self.source, f"not a readable CIFAR archive (truncated or damaged?): {e}") from None
        return found

    def names(self) -> List[str]:
        if self.source.is_dir():
            return [str(p.relative_to(self.source)) for p in self.source.rglob("*") if p.is_file()]
        try:
            with tarfile.open(self.source, "r:*") as tar:
                return [m.name for m in tar]
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise NncToolsError(self.source, f"not a readable CIFAR archive (truncated or damaged?): {e}") from None


def detect_layout(source: Path) -> tuple:
    """``(kind, format)`` of an archive or folder, from the first member each layout must have."""
    names = [n.rstrip("/") for n in _Members(source).names()]
    for (kind, fmt), (folder, members) in LAYOUTS.items():
        if any(n == members[0] or n.endswith(f"{folder}/{members[0]}") for n in names):
            return kind, fmt
    raise NncToolsError(source, "not a CIFAR-10/100 archive or folder (no cifar-10-batches-py, cifar-100-python, "
                        "cifar-10-batches-bin or cifar-100-binary inside)")


def read_cifar(source: PathLike, verify: bool = True) -> CifarData:
    """Read an official CIFAR archive (or its extracted folder) in either format."""
    source = Path(source)
    if not source.exists():
        raise NncToolsError(source, "no such file or folder")
    if verify and source.is_file():
        verify_official(source)
    kind, fmt = detect_layout(source)
    members = LAYOUTS[(kind, fmt)][1]
    data = _Members(source).read(members)
    missing = [m for m in members if m not in data]
    if missing:
        raise NncToolsError(source, f"archive lacks {', '.join(missing)} (truncated?)")
    where = str(source)
    read = _from_python(kind, data, where) if fmt == "python" else _from_binary(kind, data, where)
    check_archive(read, where)
    return read


def check_archive(data: "CifarData", where: str) -> None:
    """What a doctored or broken archive could do wrong, refused before anything is written: class names that are not one
    plain folder name (``../../x`` would write outside the output folder) or that repeat (two classes, one folder),
    labels outside the class range (silently dropped or wrapped images)."""
    for kind, names in (("class", data.label_names), ("superclass", data.coarse_names)):
        for name in names:
            if not _plain_name(name):
                raise NncToolsError(where, f"{kind} name {name!r} is not a plain folder name")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise NncToolsError(where, f"{kind} name {repeated[0]!r} appears more than once")
    for split_name, split in (("training", data.train), ("test", data.test)):
        _check_labels(split.labels, len(data.label_names), f"{split_name} labels", where)
        if split.coarse is not None:
            _check_labels(split.coarse, len(data.coarse_names), f"{split_name} superclass labels", where)


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\:\0") and name == name.strip() \
        and all(ord(c) >= 32 for c in name)


def _check_labels(labels: np.ndarray, count: int, what: str, where: str) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= count):
        bad = int(labels[(labels < 0) | (labels >= count)][0])
        raise NncToolsError(where, f"{what}: {bad} is outside the {count} classes the archive names")


def _array(d: dict, key: bytes, where: str, kind: str = "") -> np.ndarray:
    """``d[key]`` as an array; ``kind`` "u1" (pixels: uint8 only) or "i" (labels: integers only) is checked, never
    converted (a float or wider pixel would wrap silently, a string label would not be a label)."""
    if not isinstance(d, dict) or key not in d:
        raise NncToolsError(where, f"pickle lacks {key.decode()}")
    try:
        values = np.asarray(d[key])
    except (ValueError, TypeError) as e:
        raise NncToolsError(where, f"{key.decode()} is not an array: {e}") from None
    if kind == "u1" and values.dtype != np.uint8:
        raise NncToolsError(where, f"{key.decode()} has dtype {values.dtype}, expected uint8 pixels")
    if kind == "i" and values.dtype.kind not in "iu":
        raise NncToolsError(where, f"{key.decode()} has dtype {values.dtype}, expected integer labels")
    return values


def _python_split(batches: List[dict], label_key: bytes, where: str, coarse: bool) -> CifarSplit:
    arrays = [_array(b, b"data", where, "u1") for b in batches]
    for array in arrays:  # each batch alone: one of another shape would fail the concatenation with a traceback
        if array.ndim != 2 or array.shape[1] != 3072:
            raise NncToolsError(where, f"a batch's data is {'x'.join(map(str, array.shape))}; CIFAR rows are 3072 pixels "
                                "(3 channels of 32x32)")
    images = np.concatenate(arrays)
    labels = np.concatenate([_array(b, label_key, where, "i") for b in batches]).astype(np.int64)
    if images.ndim != 2 or images.shape[1] != 3072 or len(images) != len(labels):
        raise NncToolsError(where, f"unexpected data shape {images.shape} for {len(labels)} labels")
    coarse_labels = np.concatenate([_array(b, b"coarse_labels", where, "i") for b in batches]).astype(np.int64) if coarse \
        else None
    return CifarSplit(images.reshape(-1, 3, 32, 32), labels, coarse_labels)


def _names(values, where: str) -> List[str]:
    return [_text(v, where) if isinstance(v, bytes) else str(v) for v in values]


def _text(raw: bytes, where: str) -> str:
    """A class name as text: UTF-8, as every CIFAR archive has it (it becomes a folder name and a CSV header cell)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NncToolsError(where, f"class name {raw[:40]!r} is not UTF-8 text (is the archive in another encoding?)") from None


def _from_python(kind: str, data: Dict[str, bytes], where: str) -> CifarData:
    load = {name: restricted_loads(raw, f"{where}!{name}") for name, raw in data.items()}
    if kind == "cifar100":
        meta = load["meta"]
        return CifarData(
            kind,
            _python_split([load["train"]], b"fine_labels", where, True),
            _python_split([load["test"]], b"fine_labels", where, True),
            _names(_array(meta, b"fine_label_names", where).tolist(), where),
            _names(_array(meta, b"coarse_label_names", where).tolist(), where),
            where,
        )
    meta = load["batches.meta"]
    train = [load[f"data_batch_{i}"] for i in range(1, 6)]
    return CifarData(
        kind,
        _python_split(train, b"labels", where, False),
        _python_split([load["test_batch"]], b"labels", where, False),
        _names(_array(meta, b"label_names", where).tolist(), where),
        [],
        where,
    )


def _records(raw: bytes, label_bytes: int, where: str) -> np.ndarray:
    size = label_bytes + 3072
    if len(raw) % size:
        raise NncToolsError(where, f"binary batch of {len(raw)} bytes is not a whole number of {size}-byte records (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, size)


def _from_binary(kind: str, data: Dict[str, bytes], where: str) -> CifarData:
    def text_names(raw: bytes) -> List[str]:
        return [line.strip() for line in _text(raw, where).splitlines() if line.strip()]

    if kind == "cifar100":
        def split(name: str) -> CifarSplit:
            rec = _records(data[name], 2, f"{where}!{name}")
            return CifarSplit(rec[:, 2:].reshape(-1, 3, 32, 32).copy(), rec[:, 1].astype(np.int64), rec[:, 0].astype(np.int64))

        return CifarData(kind, split("train.bin"), split("test.bin"), text_names(data["fine_label_names.txt"]),
                         text_names(data["coarse_label_names.txt"]), where)

    def split10(names: List[str]) -> CifarSplit:
        rec = np.concatenate([_records(data[n], 1, f"{where}!{n}") for n in names])
        return CifarSplit(rec[:, 1:].reshape(-1, 3, 32, 32).copy(), rec[:, 0].astype(np.int64))

    return CifarData(kind, split10([f"data_batch_{i}.bin" for i in range(1, 6)]), split10(["test_batch.bin"]),
                     text_names(data["batches.meta.txt"]), [], where)
