"""The ImageNet models NNC trained and Sony publishes (``nnabla.models.imagenet``): their names, where NNabla keeps
them, their download (resumed, checked, its sha256 recorded beside the file and checked on every later use), and
``imagenet:NAME`` wherever a project is expected.

Files live where NNabla's own ``nnabla.models`` puts them (``~/nnabla_data/nnp_models/imagenet/<file>``, the same
file names), so a model either tool downloaded serves both; ``$NNC_TL_MODEL_HOME`` names another folder. The URL is
NNabla's (``$NNABLA_MODELS_URL_BASE``, else ``https://nnabla.org/pretrained-models/nnp_models/``) +
``imagenet/<folder>/<file>``, as ``nnabla.models`` and NNC's transfer-learning plugin fetch them."""

from __future__ import annotations

import difflib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import NncToolsError
from ..fileio import PathLike, file_digest
from .download import DownloadCut, download_resumable

PREFIX = "imagenet:"
DEFAULT_URL_BASE = "https://nnabla.org/pretrained-models/nnp_models/"
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ImageNetModel:
    """One published model: its name, NNabla's file and URL names for it, the crop it classifies, its ImageNet
    single-crop errors as NNabla's documentation gives them, and the NNC sample project it was trained from."""

    name: str
    file: str  # the name nnabla.models saves it under (ShuffleNet 0.5x's is "ShuffleNet-.05x.nnp", as NNabla spells it)
    folder: str  # the URL folder: imagenet/<folder>/<folder>.nnp
    crop: int
    top1: Optional[float]
    top5: Optional[float]
    sample: Optional[str] = None

    @property
    def url_path(self) -> str:
        return f"imagenet/{self.folder}/{self.folder}.nnp"


def _m(name, folder, crop, top1, top5, sample=None, file=None) -> ImageNetModel:
    return ImageNetModel(name, file or f"{folder}.nnp", folder, crop, top1, top5, sample)


MODELS: Tuple[ImageNetModel, ...] = (
    _m("ResNet-18", "Resnet-18", 224, 30.28, 10.90, "resnet-18"),
    _m("ResNet-34", "Resnet-34", 224, 26.72, 8.89, "resnet-34"),
    _m("ResNet-50", "Resnet-50", 224, 24.59, 7.48, "resnet-50"),
    _m("ResNet-101", "Resnet-101", 224, 23.81, 7.01, "resnet-101"),
    _m("ResNet-152", "Resnet-152", 224, 23.48, 7.09, "resnet-152"),
    _m("MobileNet", "MobileNet", 224, 29.51, 10.34),
    _m("MobileNet-v2", "MobileNet-v2", 224, 29.94, 10.82),
    _m("SENet-154", "SENet-154", 224, 22.04, 6.29, "senet-154"),
    _m("SqueezeNet-1.0", "SqueezeNet-1.0", 227, 42.71, 20.12),
    _m("SqueezeNet-1.1", "SqueezeNet-1.1", 227, 41.23, 19.18, "squeezenet11"),
    _m("VGG-11", "VGG-11", 224, 30.85, 11.38, "vgg-11"),
    _m("VGG-13", "VGG-13", 224, 29.51, 10.46, "vgg-13"),
    _m("VGG-16", "VGG-16", 224, 29.03, 10.07, "vgg-16"),
    _m("NIN", "NIN", 227, 42.91, 20.66, "nin"),
    _m("DenseNet-161", "DenseNet-161", 224, 23.82, 7.02, "densenet-161"),
    _m("Inception-v3", "Inception-v3", 299, 21.82, 5.88),
    _m("Xception", "Xception", 299, 23.59, 6.91),
    _m("GoogLeNet", "GoogLeNet", 224, 31.22, 11.34, "GoogLeNet"),
    _m("ResNeXt-50", "ResNeXt-50", 224, 22.95, 6.73),
    _m("ResNeXt-101", "ResNeXt-101", 224, 22.80, 6.74, "resnext-101"),
    _m("ShuffleNet-1.0x", "ShuffleNet", 224, 34.15, 13.85, "shufflenet"),
    _m("ShuffleNet-0.5x", "ShuffleNet-0.5x", 224, 41.99, 19.64, "shufflenet-0.5x", file="ShuffleNet-.05x.nnp"),
    _m("ShuffleNet-2.0x", "ShuffleNet-2.0x", 224, 30.34, 11.12, "shufflenet-2.0x"),
    _m("AlexNet", "AlexNet", 227, None, None, "alexnet"),  # in nnabla.models, not in its documentation's table
)

# Other spellings users type: NNabla's class names and file names
_ALIASES = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50", "resnet101": "ResNet-101",
            "resnet152": "ResNet-152", "mobilenetv2": "MobileNet-v2", "senet": "SENet-154", "squeezenetv10": "SqueezeNet-1.0",
            "squeezenetv11": "SqueezeNet-1.1", "vgg11": "VGG-11", "vgg13": "VGG-13", "vgg16": "VGG-16",
            "densenet": "DenseNet-161", "inceptionv3": "Inception-v3", "resnext50": "ResNeXt-50", "resnext101": "ResNeXt-101",
            "shufflenet": "ShuffleNet-1.0x", "shufflenet10": "ShuffleNet-1.0x", "shufflenet05": "ShuffleNet-0.5x",
            "shufflenet20": "ShuffleNet-2.0x"}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch == ".")


def find_model(name: str) -> ImageNetModel:
    """The model called ``name`` (case and dashes aside; NNabla's class and file names too); an unknown name is one line
    with the closest names."""
    by_key = {_key(m.name): m for m in MODELS}
    by_key.update({_key(m.folder): m for m in MODELS})
    by_key.update({_key(alias): next(m for m in MODELS if m.name == target) for alias, target in _ALIASES.items()})
    found = by_key.get(_key(name))
    if found is None:
        close = difflib.get_close_matches(name, [m.name for m in MODELS], n=3, cutoff=0.4) or \
            [m.name for m in MODELS if _key(name)[:3] and _key(m.name).startswith(_key(name)[:3])][:3]
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise NncToolsError(None, f"no ImageNet model called '{name}'{hint} (nnc-tl models lists all {len(MODELS)})")
    return found


def model_home() -> Path:
    """``$NNC_TL_MODEL_HOME``, else NNabla's ``get_model_home()/imagenet`` (not created until a download needs it)."""
    home = os.environ.get("NNC_TL_MODEL_HOME")
    return Path(home) if home else Path(os.path.expanduser("~/nnabla_data")) / "nnp_models" / "imagenet"


def url_base(base: Optional[str] = None) -> str:
    base = base or os.environ.get("NNABLA_MODELS_URL_BASE") or DEFAULT_URL_BASE
    return base if base.endswith("/") else base + "/"


def model_url(model: ImageNetModel, base: Optional[str] = None) -> str:
    return url_base(base) + model.url_path


def model_path(model: ImageNetModel) -> Path:
    return model_home() / model.file


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


@dataclass
class ModelFile:
    """A model on disk and checked: its path, sha256, where it came from, and whether this call downloaded it."""

    model: ImageNetModel
    path: Path
    sha256: str
    origin: str
    fetched: bool = False


def recorded_digest(path: Path) -> Optional[str]:
    record = digest_path(path)
    if not record.is_file():
        return None
    words = record.read_text(encoding="utf-8").split()
    return words[0] if words else None


def _record(path: Path, sha256: str) -> None:
    from ..fileio import atomic_output

    with atomic_output(digest_path(path)) as temp:
        temp.write_text(f"{sha256}  {path.name}\n", encoding="utf-8")


def fetch_model(name: str, *, from_file: Optional[PathLike] = None, base: Optional[str] = None,
                force: bool = False) -> ModelFile:
    """The model ``name`` in the model home, checked: downloaded when absent (or ``force``), taken from ``from_file``
    when given. A file already there is checked against its recorded sha256 (a file NNabla downloaded has none: it is
    checked as a download is, then recorded)."""
    model = find_model(name)
    target = model_path(model)
    if from_file is not None:
        return _adopt(model, Path(from_file), target)
    if target.is_file() and not force:
        return checked_model(model)
    url = model_url(model, base)
    try:
        part = download_resumable(url, target)
    except DownloadCut as e:
        raise NncToolsError(url, f"{e.problem}; run the same command again to resume") from None
    except NncToolsError as e:
        raise NncToolsError(url, f"{e.problem}; without network, download {model.file} elsewhere and give it with "
                            f"`nnc-tl models fetch {model.name} --from FILE`") from None
    try:
        check_model_archive(part, model, origin=url)
        sha256 = file_digest(part)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    _record(target, sha256)
    return ModelFile(model, target, sha256, url, fetched=True)


def _adopt(model: ImageNetModel, source: Path, target: Path) -> ModelFile:
    """A file the user downloaded elsewhere, checked, then copied into the model home under NNabla's name."""
    import shutil

    from ..fileio import atomic_output

    if not source.is_file():
        raise NncToolsError(source, "no such file")
    check_model_archive(source, model, origin=str(source))
    sha256 = file_digest(source)
    if not (target.is_file() and file_digest(target) == sha256):
        with atomic_output(target) as temp:
            shutil.copyfile(source, temp)
    _record(target, sha256)
    return ModelFile(model, target, sha256, str(source), fetched=True)


def checked_model(model: ImageNetModel) -> ModelFile:
    """The model already in the model home, its bytes matched against the recorded sha256."""
    path = model_path(model)
    sha256 = file_digest(path)
    recorded = recorded_digest(path)
    if recorded is None:
        check_model_archive(path, model, origin=str(path))
        _record(path, sha256)
    elif recorded != sha256:
        raise NncToolsError(path, f"has changed since it was fetched (sha256 {sha256[:12]}…, recorded {recorded[:12]}…); "
                            f"fetch it again: nnc-tl models fetch {model.name} --force")
    return ModelFile(model, path, sha256, str(path))


def check_model_archive(path: Path, model: ImageNetModel, origin: str) -> None:
    """A whole zip holding an NNabla project NNC trained on ImageNet: networks, an executor scoring 1000 classes, and a
    value for every parameter its networks declare (Repeat blocks' per-repetition names counted)."""
    from ..formats.naming import repeat_expansions
    from ..formats.nnp import load_project
    from ..formats.schema import executor_classes

    try:
        with zipfile.ZipFile(path) as zf:
            broken = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise NncToolsError(origin, f"is not a whole .nnp archive ({e}): a truncated download, or not a model") from None
    if broken is not None:
        raise NncToolsError(origin, f"is damaged: member {broken} fails its CRC check")
    project = load_project(path)
    proto = project.proto
    classes = executor_classes(proto)
    if not proto.network or not classes:
        raise NncToolsError(origin, f"is not an ImageNet project NNC trained: no executor with a classifier output "
                            f"(expected {model.name})")
    if classes != IMAGENET_CLASSES:
        raise NncToolsError(origin, f"is not an ImageNet project: its executor scores {classes} classes, not "
                            f"{IMAGENET_CLASSES} (expected {model.name})")
    params = project.parameters
    declared = dict.fromkeys(v.name for n in proto.network for v in n.variable if v.type == "Parameter")
    missing = [n for n in declared if n not in params and not repeat_expansions(n, params)]
    if missing:
        raise NncToolsError(origin, f"has no values for {len(missing)} of its {len(declared)} parameters "
                            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")


def list_models() -> List[Tuple[ImageNetModel, Path, Optional[str]]]:
    """Every model with its path in the model home and its recorded sha256 (None: not fetched by nnc-tl, or absent)."""
    return [(m, model_path(m), recorded_digest(model_path(m)) if model_path(m).is_file() else None) for m in MODELS]


def resolve_source(source: PathLike) -> Path:
    """A project path as given, or for ``imagenet:NAME`` the model's file (fetched on first use, checked on every use)."""
    text = os.fspath(source)
    if not text.startswith(PREFIX):
        return Path(source)
    return fetch_model(text[len(PREFIX):]).path


def is_model(source) -> bool:
    """Whether ``source`` names a published model (``imagenet:NAME``) rather than a file."""
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).startswith(PREFIX)


def model_of(source: PathLike) -> Optional[ModelFile]:
    """For ``imagenet:NAME``, the checked model file (fetched on first use); None for a path."""
    text = os.fspath(source)
    return fetch_model(text[len(PREFIX):]) if text.startswith(PREFIX) else None
