"""`nnc-tl dataset`: CIFAR archives (python and binary, archive or folder) to NNC dataset folders, safely and repeatably."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnc_tools.data.cifar import read_cifar
from nnc_tools.data.recipes import AQUATIC, BUILTIN, load_recipe
from nnc_tools.data.synthetic import CIFAR100_NAMES, generate, write_archive

from .conftest import assert_refused

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNC_TL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def small100():
    return generate("cifar100", 10, 3, seed=5)


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".nnc-tl-dataset.json"}


def rows(csv_path: Path):
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [(path, int(label)) for path, label in reader]


def test_synthetic_aquatic_layout_counts_and_pixels(cli, tmp_path, cache):
    out = tmp_path / "aq"
    result = cli("dataset", "cifar100-aquatic", "--synthetic", "-o", out)
    assert result.code == 0, result.err
    expected = {"training": 40, "validation": 10, "test": 10}  # the real 400/100/100 per class, scaled by 1/10
    archive = next(cache.glob("synthetic-cifar-100-python-*.tar.gz"))
    data = read_cifar(archive)
    source_images = {"training": data.train, "validation": data.train, "test": data.test}
    for split, per_class in expected.items():
        header, table = rows(out / f"{split}.csv")
        assert header == ["x:image", "y:label;" + ";".join(AQUATIC)]
        assert len(table) == per_class * 10
        assert sorted({label for _, label in table}) == list(range(10))
        assert all(sum(1 for _, label in table if label == k) == per_class for k in range(10))
        for path, label in table:
            assert path.startswith(f"./{split}/{AQUATIC[label]}/") and path.endswith(".png")
        # every PNG is one of the source images of its class
        first_class = np.flatnonzero(source_images[split].labels == CIFAR100_NAMES.index(AQUATIC[0]))
        pool = {source_images[split].images[i].tobytes() for i in first_class}
        for path, label in table:
            image = np.asarray(Image.open(out / path)).transpose(2, 0, 1)
            if label == 0:
                assert image.tobytes() in pool
    assert not set(rows(out / "training.csv")[1]) & set(rows(out / "validation.csv")[1])


def test_every_png_equals_its_source_image(tmp_path, small100):
    from nnc_tools.data.recipes import assign_images, build

    recipe = BUILTIN["cifar100-aquatic"]
    build(recipe, small100, tmp_path / "out", workers=1, progress=False)
    names, items = assign_images(recipe, small100, 0)
    assert names == AQUATIC
    for split in ("training", "validation", "test"):
        for item in items[split]:
            source = (small100.train if item.source_split == "train" else small100.test).images[item.source_index]
            assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / item.path)).transpose(2, 0, 1), source)
            source_split = small100.train if item.source_split == "train" else small100.test
            assert CIFAR100_NAMES[int(source_split.labels[item.source_index])] == AQUATIC[item.label]


def test_nnablas_csv_iterator_reads_all_three(tmp_path):
    from nnabla.utils.data_iterator import data_iterator_csv_dataset

    out = tmp_path / "aq"
    from nnc_tools.data.recipes import make_dataset

    make_dataset("cifar100-aquatic", out, synthetic=True, synthetic_per_class=10, workers=1)
    for split, n in (("training", 80), ("validation", 20), ("test", 20)):
        it = data_iterator_csv_dataset(str(out / f"{split}.csv"), 16, shuffle=False, normalize=False, with_file_cache=False)
        assert it.size == n and it.variables == ("x", "y")
        x, y = it.next()
        assert x.shape == (16, 3, 32, 32) and y.shape == (16, 1)
        header, table = rows(out / f"{split}.csv")
        first = np.asarray(Image.open(out / table[0][0])).transpose(2, 0, 1)
        assert np.array_equal(x[0], first) and int(y[0, 0]) == table[0][1]
        it.close()


@pytest.mark.parametrize("fmt", ["python", "binary"])
@pytest.mark.parametrize("as_folder", [False, True])
def test_both_archive_formats_as_archive_or_folder(cli, tmp_path, small100, fmt, as_folder):
    archive = write_archive(small100, tmp_path / f"c100-{fmt}.tar.gz", fmt)
    source = archive
    if as_folder:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path / "extracted")
        source = tmp_path / "extracted"
    reference = tmp_path / "reference"
    from nnc_tools.data.recipes import build

    build(BUILTIN["cifar100-aquatic"], small100, reference, workers=1, progress=False)
    out = tmp_path / "out"
    result = cli("dataset", "cifar100-aquatic", "--source", source, "-o", out, "--workers", "1")
    assert result.code == 0, result.err
    assert tree(out) == tree(reference)


def test_cifar10_builtin_validates_on_the_test_set(cli, tmp_path):
    result = cli("dataset", "cifar10", "--synthetic", "--synthetic-per-class", "10", "-o", tmp_path / "c10", "--workers", "1")
    assert result.code == 0, result.err
    header, training = rows(tmp_path / "c10" / "training.csv")
    assert header[1] == "y:label;airplane;automobile;bird;cat;deer;dog;frog;horse;ship;truck"
    assert len(training) == 100
    assert rows(tmp_path / "c10" / "validation.csv") == rows(tmp_path / "c10" / "test.csv")
    assert len(rows(tmp_path / "c10" / "test.csv")[1]) == 20


def test_recipe_files_and_superclasses(cli, tmp_path):
    assert load_recipe(str(REPO / "datasets" / "cifar100_aquatic.yaml")) == BUILTIN["cifar100-aquatic"]
    a = cli("dataset", "cifar100-aquatic", "--synthetic", "--synthetic-per-class", "5", "-o", tmp_path / "a", "--workers", "1")
    b = cli("dataset", str(REPO / "datasets" / "cifar100_aquatic_superclasses.yaml"), "--synthetic", "--synthetic-per-class", "5",
            "-o", tmp_path / "b", "--workers", "1")
    assert a.code == 0 and b.code == 0, (a.err, b.err)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_unknown_class_names_the_nearest(cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: cifar100\nclasses: [beaver, dolphins]\n")
    result = cli("dataset", recipe, "--synthetic", "--synthetic-per-class", "2", "-o", tmp_path / "out")
    assert result.code == 2 and "dolphins" in result.err and "closest: dolphin" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "s.yaml"
    bad.write_text("source: cifar100\nsuperclasses: [fishes]\n")
    assert "closest: fish" in cli("dataset", bad, "--synthetic", "--synthetic-per-class", "2", "-o", tmp_path / "o2").err
    typo = cli("dataset", "cifar100-aquatik", "--synthetic", "-o", tmp_path / "o3")
    assert typo.code == 2 and "cifar100-aquatic" in typo.err


def _malicious_archive(path: Path, marker: Path, good: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with tarfile.open(good) as src, tarfile.open(path, "w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read()
            if member.name.endswith("/meta"):
                data = pickle.dumps({b"fine_label_names": Payload(), b"coarse_label_names": []}, protocol=2)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return path


def test_restricted_unpickler_refuses_code(cli, tmp_path, small100):
    good = write_archive(small100, tmp_path / "good.tar.gz")
    marker = tmp_path / "pwned"
    evil = _malicious_archive(tmp_path / "evil.tar.gz", marker, good)
    result = cli("dataset", "cifar100-aquatic", "--source", evil, "-o", tmp_path / "out")
    assert result.code == 2 and "refused" in result.err and "system" in result.err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_md5_of_official_names_is_checked(cli, tmp_path, small100):
    fake = write_archive(small100, tmp_path / "cifar-100-python.tar.gz")
    result = cli("dataset", "cifar100-aquatic", "--source", fake, "-o", tmp_path / "out")
    assert result.code == 2 and "md5" in result.err and not (tmp_path / "out").exists()
    ok = cli("dataset", "cifar100-aquatic", "--source", fake, "-o", tmp_path / "out", "--no-verify", "--workers", "1")
    assert ok.code == 0, ok.err


def test_truncated_archive(cli, tmp_path, small100):
    good = write_archive(small100, tmp_path / "good.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    result = cli("dataset", "cifar100-aquatic", "--source", cut, "-o", tmp_path / "out")
    assert_refused(result, "cut.tar.gz")
    assert not (tmp_path / "out").exists()


def test_url_source_is_fetched_into_the_cache(cli, tmp_path, small100, cache):
    archive = write_archive(small100, tmp_path / "served" / "c100.tar.gz")
    result = cli("dataset", "cifar100-aquatic", "--source", archive.as_uri(), "-o", tmp_path / "out", "--workers", "1")
    assert result.code == 0, result.err
    assert (cache / "c100.tar.gz").read_bytes() == archive.read_bytes()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    missing = cli("dataset", "cifar100-aquatic", "--source", (tmp_path / "nope.tar.gz").as_uri(), "-o", tmp_path / "o2")
    assert missing.code == 2 and "download failed" in missing.err


def test_rerun_is_a_noop_and_a_different_dataset_needs_force(cli, tmp_path):
    out = tmp_path / "out"
    args = ["dataset", "cifar100-aquatic", "--synthetic", "--synthetic-per-class", "5", "-o", out, "--workers", "1"]
    assert cli(*args).code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = cli(*args)
    assert again.code == 0 and "already up to date" in again.out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    other = cli(*args[:-2], "--seed", "3")
    assert other.code == 2 and "--force" in other.err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    forced = cli(*args[:-2], "--seed", "3", "--force")
    assert forced.code == 0


def test_workers_do_not_change_the_bytes(cli, tmp_path):
    common = ["cifar100-aquatic", "--synthetic", "--synthetic-per-class", "10"]
    assert cli("dataset", *common, "-o", tmp_path / "w1", "--workers", "1").code == 0
    assert cli("dataset", *common, "-o", tmp_path / "w2", "--workers", "2").code == 0
    assert tree(tmp_path / "w1") == tree(tmp_path / "w2") and len(tree(tmp_path / "w1")) == 80 + 20 + 20 + 3


@pytest.mark.slow
def test_killed_run_resumes_to_identical_output(tmp_path, cache):
    env = dict(os.environ, NNC_TL_CACHE=str(cache))
    exe = [sys.executable, "-m", "nnc_tools.cli", "dataset", "cifar100", "--synthetic", "--synthetic-per-class", "20", "--workers", "1"]
    assert subprocess.run(exe + ["-o", str(tmp_path / "whole")], env=env, capture_output=True).returncode == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen(exe + ["-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.rglob("*.png"))) < 300:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list(out.rglob("*.png")))
    assert 0 < written < 2400 and not (out / "training.csv").exists()
    resumed = subprocess.run(exe + ["-o", str(out)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"wrote {2400 - written} images" in resumed.stdout or "wrote" in resumed.stdout
    assert tree(out) == tree(tmp_path / "whole")
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_full_size_format_archive_gives_the_real_counts(cli, tmp_path, cache):
    full = generate("cifar100", 500, 100, seed=1)
    archive = write_archive(full, tmp_path / "full.tar.gz")
    result = cli("dataset", "cifar100-aquatic", "--source", archive, "-o", tmp_path / "aq")
    assert result.code == 0, result.err
    for split, per_class in (("training", 400), ("validation", 100), ("test", 100)):
        _, table = rows(tmp_path / "aq" / f"{split}.csv")
        assert len(table) == per_class * 10
        assert all(sum(1 for _, label in table if label == k) == per_class for k in range(10))


def test_max_per_class_caps_before_the_split(cli, tmp_path):
    recipe = tmp_path / "capped.yaml"
    recipe.write_text("source: cifar100\nsuperclasses: [fish]\nsplit: {training: 0.5, validation: 0.5}\nmax_per_class: 4\ntest: false\n")
    result = cli("dataset", recipe, "--synthetic", "--synthetic-per-class", "10", "-o", tmp_path / "out", "--workers", "1")
    assert result.code == 0, result.err
    header, training = rows(tmp_path / "out" / "training.csv")
    assert header[1] == "y:label;aquarium_fish;flatfish;ray;shark;trout"
    assert len(training) == 10 and len(rows(tmp_path / "out" / "validation.csv")[1]) == 10
    assert not (tmp_path / "out" / "test.csv").exists() and not (tmp_path / "out" / "test").exists()


def doctored(tmp_path: Path, name: str, **changes) -> Path:
    """A small generated CIFAR-10 archive with some of its contents replaced (names, the training split)."""
    data = replace(generate("cifar10", 4, 2, seed=1), **changes)
    return write_archive(data, tmp_path / f"{name}.tar.gz")


def hostile_archives(tmp_path: Path):
    good = generate("cifar10", 4, 2, seed=1)
    names = list(good.label_names)
    yield "class name climbing out", doctored(tmp_path, "a", label_names=["../../../x"] + names[1:]), "plain folder name"
    yield "class name with a slash", doctored(tmp_path, "b", label_names=["a/b"] + names[1:]), "plain folder name"
    yield "blank class name", doctored(tmp_path, "c", label_names=[" "] + names[1:]), "plain folder name"
    yield "same class twice", doctored(tmp_path, "d", label_names=[names[1]] + names[1:]), "more than once"
    yield "label past the classes", doctored_batch(tmp_path, "e", b"labels", lambda v: [x + 10 for x in v]), \
        "outside the 10 classes"
    yield "negative label", doctored_batch(tmp_path, "f", b"labels", lambda v: [x - 1 for x in v]), "outside"
    yield "float pixels", doctored_batch(tmp_path, "g", b"data", lambda v: v.astype(np.float64)), "expected uint8 pixels"
    yield "string labels", doctored_batch(tmp_path, "h", b"labels", lambda v: [str(x) for x in v]), "expected integer labels"
    yield "a cp932 class name", doctored_meta(tmp_path, "j", ["全結合".encode("cp932")] + [n.encode() for n in names[1:]]), \
        "is not UTF-8 text"
    yield "one channel in one batch", doctored_batch(tmp_path, "i", b"data", lambda v: np.ascontiguousarray(v[:, :1024])), \
        "CIFAR rows are 3072 pixels"


def doctored_meta(tmp_path: Path, name: str, label_names) -> Path:
    """An extracted CIFAR-10 folder whose batches.meta names the classes with these bytes."""
    archive = doctored(tmp_path, name)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / name)
    meta = tmp_path / name / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({b"label_names": label_names}, protocol=2))
    return meta.parent


def doctored_batch(tmp_path: Path, name: str, key: bytes, change) -> Path:
    """An extracted CIFAR-10 folder whose first training batch has ``key`` replaced by ``change(old value)``."""
    archive = doctored(tmp_path, name)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / name)
    batch = tmp_path / name / "cifar-10-batches-py" / "data_batch_1"
    content = pickle.loads(batch.read_bytes())  # our own test file, written a line above
    content[key] = change(content[key])
    batch.write_bytes(pickle.dumps(content, protocol=2))
    return batch.parent


def test_hostile_archives_are_one_line_and_write_nothing(cli, tmp_path):
    out = tmp_path / "out"
    for what, archive, message in hostile_archives(tmp_path):
        before = tree(archive) if archive.is_dir() else hashlib.sha256(archive.read_bytes()).hexdigest()
        result = cli("dataset", "cifar10", "--source", archive, "--no-verify", "-o", out)
        assert result.code == 2, (what, result.err)
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and str(archive) in lines[0], (what, lines)
        assert not out.exists() and not (tmp_path.parent / "x").exists(), what
        assert (tree(archive) if archive.is_dir() else hashlib.sha256(archive.read_bytes()).hexdigest()) == before


def test_a_recipe_naming_a_class_twice_is_refused(cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: cifar10\nclasses: [cat, dog, cat]\n")
    result = cli("dataset", recipe, "--synthetic", "--synthetic-per-class", "2", "-o", tmp_path / "o")
    assert result.code == 2 and "'cat' is listed twice" in result.err and not (tmp_path / "o").exists()
