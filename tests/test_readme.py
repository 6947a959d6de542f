"""The README's commands, run: every command of its ``sh`` blocks, in order, in an empty folder with the venv on the PATH,
except those that need what this machine lacks (each skip names why); and the demo settings it quotes, read from
``experiments/demo.yaml``. A README that drifts from the code fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NNC_SAMPLES = ROOT.parent / "shared" / "nnc-samples"
README = ROOT / "README.md"

# (pattern, why it cannot run here); a command matching none of these runs, and must succeed
NOT_HERE = [
    (r"^make ", "make itself: CI runs `make test`; `make demo` is the experiment below"),
    (r"--cifar10 .*--cifar100 ", "needs the real CIFAR archives"),
    (r"experiments/demo\.yaml", "`make demo` (minutes); tests/test_experiment.py runs the same stages at smaller settings"),
    (r"\$NNC_SAMPLES", "needs NNC's sample projects (../shared/nnc-samples), absent here"),
    (r"--source (https?://|cifar-)", "needs the real CIFAR archive or a download"),
    (r"^mpirun ", "needs MPI and GPUs"),
    (r"^mkdir tour && cd tour$", "the test runs in its own empty folder"),
    (r"imagenet:|models fetch|resnet18-aquatic", "needs a published model (a download); test_imagenet.py runs it on stand-ins"),
]


def sh_commands(text: str):
    """Every command of the ``sh`` blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def skip_reason(command: str):
    """Why a command cannot run here, or None; NNC's samples are there when ``../shared`` is checked out."""
    rules = [(p, why) for p, why in NOT_HERE if not (p == r"\$NNC_SAMPLES" and NNC_SAMPLES.is_dir())]
    return next((why for pattern, why in rules if re.search(pattern, command)), None)


def overlay_example(text: str, name: str = "freeze.yaml") -> str:
    """The overlay the README shows as ``freeze.yaml`` (or ``phases.yaml``): the yaml block after its name."""
    return re.search(rf"`{re.escape(name)}`[^\n]*:\n\n```yaml\n(.*?)^```", text, flags=re.S | re.M).group(1)


@pytest.mark.slow
def test_every_readme_command_that_can_run_here_runs(tmp_path):
    text = README.read_text()
    commands = sh_commands(text)
    (tmp_path / "freeze.yaml").write_text(overlay_example(text))
    (tmp_path / "phases.yaml").write_text(overlay_example(text, "phases.yaml"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", NNC_SAMPLES=str(NNC_SAMPLES))
    ran = []
    for command in commands:
        if skip_reason(command):
            continue
        command = re.sub(r"^\.venv/bin/", "", command)
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"README command failed: {command}\n{done.stderr[-3000:]}"
        ran.append(command)
    assert len(ran) >= 15, ran
    # what the tour says it makes is there
    if NNC_SAMPLES.is_dir():
        assert (tmp_path / "frozen.sdcproj").is_file()
    for made in ("net.nntxt", "net.h5", "out.nnp", "all.protobuf", "target.nnp", "results/transfer/results.nnp",
                 "results/transfer/test/confusion_matrix.png", "data/aquatic-synthetic/test.csv", "results/phased/results.nnp"):
        assert (tmp_path / made).exists(), made


def test_every_skipped_readme_command_has_a_reason_and_the_rules_are_used():
    commands = sh_commands(README.read_text())
    used = {pattern for pattern, _ in NOT_HERE for c in commands if re.search(pattern, c)}
    assert used == {pattern for pattern, _ in NOT_HERE}, "a skip rule no README command needs any more"


def test_the_demo_settings_the_readme_quotes_are_demo_yaml():
    demo = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    text = " ".join(README.read_text().split())
    quoted = re.search(r"(\d+) generated images per CIFAR-10 class for the source, (\d+) per aquatic class for the target "
                       r"\((\d+) training / (\d+) validation / (\d+) test\), (\d+) source and (\d+) target epochs, batch (\d+), "
                       r"(\w+) ([\d.]+)", text)
    assert quoted, "the README no longer quotes the demo settings in the form this test reads"
    per_source, per_target, train, val, test, source_epochs, target_epochs, batch, solver, lr = quoted.groups()
    assert int(per_source) == demo["synthetic_per_class"]["source"]
    assert int(per_target) == demo["synthetic_per_class"]["target"]
    assert int(train) + int(val) == int(per_target) and int(test) == int(per_target) // 5
    assert (int(source_epochs), int(target_epochs), int(batch)) == (demo["source_epochs"], demo["target_epochs"], demo["batch_size"])
    assert (solver, float(lr)) == (demo["solver"], demo["lr"])
    assert f"each of the {len(demo['arms'])} arms runs with {demo['seeds']} seeds" in text
    # the comment at the top of demo.yaml says the same batch
    assert f"batch {demo['batch_size']}." in (ROOT / "experiments" / "demo.yaml").read_text()


def test_the_readme_documents_every_recipe_key():
    """The recipe format is documented where the Datasets section says it is: one table row per key the reader takes."""
    from nnc_tools.data.recipes import RECIPE_KEYS

    section = README.read_text().split("\n### Datasets\n", 1)[1].split("\n### ", 1)[0]
    assert {key for key in RECIPE_KEYS if f"| `{key}` |" in section} == RECIPE_KEYS
