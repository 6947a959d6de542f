"""Property tests for the readers that take users' files: any bytes give a result or an NncToolsError (one line for the
user), never another exception (issue 19)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnc_tools.data.cifar import restricted_loads
from nnc_tools.errors import NncToolsError
from nnc_tools.formats.nnc_csv import read_header_and_count
from nnc_tools.formats.nnc_graph import expand
from nnc_tools.formats.sdcproj import load_sdcproj
from nnc_tools.project.info import describe
from nnc_tools.project.overlay import load_overlay

from .conftest import multi, single

# NNC_TL_EXAMPLES=2000 for a longer search than make test's
QUICK = settings(max_examples=int(os.environ.get("NNC_TL_EXAMPLES", "150")), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def only_user_errors(read) -> None:
    """``read()`` succeeds or raises NncToolsError; anything else propagates and fails the test."""
    try:
        read()
    except NncToolsError:
        pass


def mutated(base: str):
    """The base text with a slice replaced by arbitrary text: mostly valid files with a fault somewhere."""
    return st.tuples(st.integers(0, len(base)), st.integers(0, 40), st.text(max_size=40)).map(
        lambda t: base[: t[0]] + t[2] + base[t[0] + t[1]:])


@QUICK
@given(st.one_of(mutated(single()), mutated(multi()), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_sdcproj_reader(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("s") / "p.sdcproj"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))

    def read():
        sdc = load_sdcproj(path)
        for net in sdc.network_names():
            expand(sdc, net)
        describe(path)

    only_user_errors(read)


PROJECT = 'network { name: "Main" batch_size: 1 variable { name: "x" type: "Buffer" shape { dim: 1 dim: 2 } } }\n'


@QUICK
@given(st.one_of(mutated(PROJECT), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))), st.sampled_from([".nntxt", ".protobuf"]))
def test_project_reader(tmp_path_factory, text, ext):
    path = tmp_path_factory.mktemp("p") / f"p{ext}"
    path.write_bytes(text.encode("latin-1", "replace") if ext == ".protobuf" else text.encode("utf-8", "surrogateescape"))
    only_user_errors(lambda: describe(path))


@QUICK
@given(st.one_of(mutated("rules:\n  - up_to: A\n    multiplier: 0\nfreeze: [B]\nlr_multiplier: {C: 2}\n"),
                 st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_overlay_reader(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("o") / "o.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    only_user_errors(lambda: load_overlay(path))


@QUICK
@given(st.one_of(mutated("x:image,y:label;a;b\n./a.png,0\n./b.png,1\n"), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_dataset_csv_reader(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("c") / "d.csv"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    only_user_errors(lambda: read_header_and_count(path))


@QUICK
@given(st.binary(max_size=300))
def test_cifar_pickle_reader(raw):
    only_user_errors(lambda: restricted_loads(raw, "batch"))


@QUICK
@given(st.one_of(mutated("rules:\n  - decay: 0.5\n    from: A\n    to: B\n    params: [W]\nfrozen_bn: batch\n"),
                 st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_overlay_reader_with_decay_rules(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("o") / "o.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    only_user_errors(lambda: load_overlay(path))


@QUICK
@given(st.one_of(mutated("network: resnet20\nseeds: 2\nlr: 0.01\nbatch_size: 8\nsynthetic_per_class: {source: 3}\n"),
                 st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_experiment_config_reader(tmp_path_factory, text):
    from nnc_tools.experiment.config import load_config

    path = tmp_path_factory.mktemp("c") / "c.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    only_user_errors(lambda: load_config(path))


@QUICK
@given(st.one_of(mutated("name: x\nsource: cifar100\nsuperclasses: [fish]\nsplit: {training: 0.8, validation: 0.2}\n"
                         "max_per_class: 5\n"), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_dataset_recipe_reader(tmp_path_factory, text):
    from nnc_tools.data.recipes import load_recipe

    path = tmp_path_factory.mktemp("r") / "r.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    only_user_errors(lambda: load_recipe(str(path)))


@QUICK
@given(st.one_of(mutated("x:image,y:label\n./a.png,0\n./b.png,3\n"), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_class_count_reader(tmp_path_factory, text):
    from nnc_tools.formats.nnc_csv import class_count

    path = tmp_path_factory.mktemp("c") / "d.csv"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    only_user_errors(lambda: class_count(path))
