"""The house rules, checked on the code itself: imports point down the layers, modules and functions stay small, and
the README's layout section lists exactly the modules each layer holds."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nnc_tools"

# Lowest first: a module may import from its own layer and those before it, never from one after it.
LAYERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("ground", ("__init__", "errors", "fileio", "yamlfile")),
    ("formats", ()),
    ("data", ()),
    ("project", ()),
    ("training", ()),
    ("experiment", ()),
    ("cli", ()),
]
TOP_LEVEL = {name for layer, names in LAYERS for name in names}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
EXCEPTIONS: Dict[str, str] = {}  # "module:function" -> why it may be longer (none today)


def modules() -> List[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def layer_of(path: Path) -> int:
    """The layer index of a module file: its subpackage, or the layer that lists a top-level module."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    names = [layer for layer, _ in LAYERS]
    if len(parts) > 1:
        return names.index(parts[0])
    return next(i for i, (_, members) in enumerate(LAYERS) if parts[0] in members)


def imported_modules(path: Path, text: Optional[str] = None) -> List[Tuple[int, str]]:
    """(line, module path under nnc_tools such as ``formats/nnp``) for every import of nnc_tools in the file, those
    inside functions included."""
    package = list(path.relative_to(PACKAGE).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "nnc_tools":
                target = node.module.split(".")[1:]
            else:
                continue
            if not node.module:  # `from . import x`: x is a module of that package, or a name its __init__ defines
                for alias in node.names:
                    module = target + [alias.name]
                    found.append((node.lineno, "/".join(module if _is_module(module) else target + ["__init__"])))
                continue
            found.append((node.lineno, "/".join(target)))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "nnc_tools":
                    found.append((node.lineno, "/".join(alias.name.split(".")[1:]) or "__init__"))
    return found


def _is_module(parts: List[str]) -> bool:
    path = PACKAGE.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def target_layer(target: str) -> int:
    first = target.split("/")[0]
    names = [layer for layer, _ in LAYERS]
    if first in names:
        return names.index(first)
    return next(i for i, (_, members) in enumerate(LAYERS) if first in members)


def test_every_module_belongs_to_a_layer():
    for path in modules():
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            assert path.stem in TOP_LEVEL, f"{path}: a top-level module no layer lists"
        else:
            assert len(parts) == 2 and parts[0] in {layer for layer, _ in LAYERS}, f"{path}: not in a layer's folder"


def test_imports_point_down_the_layers():
    wrong = []
    for path in modules():
        mine = layer_of(path)
        for line, target in imported_modules(path):
            theirs = target_layer(target)
            if theirs > mine:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


def test_the_import_check_sees_upward_imports():
    """The checker itself, on a made-up formats module: relative, absolute and in-function imports upwards are found."""
    fake = PACKAGE / "formats" / "probe.py"
    text = ("from ..training.train import train\nfrom .schema import nnabla_pb2\nimport nnc_tools.cli\n"
            "def f():\n    from nnc_tools.experiment import report\n")
    targets = sorted(t for _, t in imported_modules(fake, text))
    assert targets == ["cli", "experiment", "formats/schema", "training/train"]
    assert [target_layer(t) > layer_of(fake) for t in targets] == [True, True, False, True]


def import_graph() -> Dict[str, List[str]]:
    """Module (``formats/nnp``) -> the nnc_tools modules it imports, in-function imports included."""
    graph = {}
    for path in modules():
        name = "/".join(path.relative_to(PACKAGE).with_suffix("").parts)
        graph[name] = sorted({_module_name(t) for _, t in imported_modules(path)} - {name})
    return graph


def _module_name(target: str) -> str:
    """An import target as a module: a package stands for its ``__init__``."""
    return target if _is_module(target.split("/")) and not (PACKAGE / target).is_dir() else f"{target}/__init__"


def cycles(graph: Dict[str, List[str]]) -> List[List[str]]:
    """Every import cycle once, as the modules along it (depth-first search; a cycle is found at its back edge)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_check_sees_cycles():
    """The checker on a made-up graph: a two-module circle (through an in-function import) and a longer one."""
    graph = {"project/a": ["project/b"], "project/b": ["project/a"], "formats/x": ["formats/y"],
             "formats/y": ["formats/z"], "formats/z": ["formats/x"], "formats/w": ["formats/x"]}
    assert sorted(sorted(c) for c in cycles(graph)) == [["formats/x", "formats/x", "formats/y", "formats/z"],
                                                        ["project/a", "project/a", "project/b"]]
    assert cycles({"a": ["b"], "b": []}) == []


def test_modules_and_functions_stay_small():
    too_long = []
    for path in modules():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {text.count(chr(10))} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                key = f"{path.relative_to(PACKAGE).with_suffix('')}:{node.name}"
                if lines > MAX_FUNCTION_LINES and key not in EXCEPTIONS:
                    too_long.append(f"{rel}:{node.lineno} {node.name}: {lines} lines (at most {MAX_FUNCTION_LINES})")
    assert not too_long, "\n".join(too_long)


_LAYOUT_LINE = re.compile(r"^- `nnc_tools/(?:(\w+)/)?` \(([^)]*)\) — \S")


def readme_layers() -> List[Tuple[str, List[str]]]:
    """(folder or '' for the package's top level, modules) per line of the README's layout section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = _LAYOUT_LINE.match(line)
        if m:
            rows.append((m.group(1) or "", re.findall(r"`(\w+)`", m.group(2))))
    return rows


def test_readme_layout_lists_the_layers_and_their_modules():
    rows = readme_layers()
    expected = []
    for layer, members in LAYERS:
        if members:
            expected.append(("", list(members)))
        else:
            folder = PACKAGE / layer
            expected.append((layer, sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("__"))))
    assert [(folder, sorted(names)) for folder, names in rows] == [(f, sorted(n)) for f, n in expected]


@pytest.mark.parametrize("layer", [layer for layer, members in LAYERS if not members])
def test_every_layer_says_what_it_holds(layer):
    doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
    assert doc and "may import" in doc.lower(), f"nnc_tools/{layer}/__init__.py: a docstring saying what lives here and what it may import"
