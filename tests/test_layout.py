"""The layout's rule: packages form layers and every import points down, never up, with no cycle.

A layer may import any layer below it; `analysis` may import only the record contract
(study.schema) and the storage readers (study.storage), so a report opens without JAX or
Ray. Imports inside functions count the same as module-level ones (an import moved into a
function to dodge a cycle is still an edge), and the library has none of project modules.
"""
from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Lowest first. A unit is a package or a top-level module of one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("study.schema", "study.runtime", "models"),
    ("study.storage",),
    ("study.data",),
    ("study.metrics",),
    ("study.trial",),
    ("search_spaces",),
    ("analysis",),
    ("study.sweep",),
    ("study.run", "benchmarks"),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
# Stricter than its rank: the report needs no accelerator stack.
ONLY = {"analysis": {"study.schema", "study.storage"}}
LIBRARY = ("study", "models", "search_spaces", "analysis")


def unit_of(module: str) -> str | None:
    """The layer unit a dotted module name belongs to (None: not the project's)."""
    for unit in sorted(RANK, key=len, reverse=True):
        if module == unit or module.startswith(unit + "."):
            return unit
    if module == "study":
        return "study"
    return None


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import of `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    found = []
    for node in ast.walk(tree):
        inside = id(node) in in_function
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, inside) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from study import data` imports study.data: name the submodule where it is one.
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((candidate if unit_of(candidate) and unit_of(candidate) != unit_of(base) else base,
                              node.lineno, inside))
    return found


def project_files() -> list[pathlib.Path]:
    files = []
    for top in (*LIBRARY, "benchmarks"):
        files += sorted((ROOT / top).rglob("*.py"))
    return files


def edges(files: list[pathlib.Path] | None = None, root: pathlib.Path = ROOT) -> list[tuple[str, str, str]]:
    """(source unit, target unit, "file:line") of every cross-unit project import."""
    result = []
    for path in project_files() if files is None else files:
        source = unit_of(module_name(path, root))
        for target_module, line, _ in imports_of(path, root):
            target = unit_of(target_module)
            if target and source and target != source:
                result.append((source, target, f"{path.relative_to(root)}:{line}"))
    return result


def test_every_module_belongs_to_a_layer():
    loose = [str(p.relative_to(ROOT)) for p in project_files()
             if unit_of(module_name(p)) in (None, "study") and p.name != "__init__.py"]
    assert not loose, f"modules outside every layer of tests/test_layout.py: {loose}"


def test_imports_point_down_the_layers():
    upward = [f"{where}: {source} imports {target}" for source, target, where in edges()
              if target == "study" or RANK[target] >= RANK[source]
              or (source in ONLY and target not in ONLY[source])]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_the_package_graph_has_no_cycle():
    graph: dict[str, set[str]] = {}
    for source, target, _ in edges():
        graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}

    def visit(unit: str, path: list[str]) -> None:
        state[unit] = 1
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, unit, nxt]))
            if nxt not in state:
                visit(nxt, [*path, unit])
        state[unit] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [])


def test_the_library_imports_project_modules_only_at_module_level():
    inner = [f"{path.relative_to(ROOT)}:{line} imports {module} inside a function"
             for path in project_files() if path.relative_to(ROOT).parts[0] in LIBRARY
             for module, line, inside in imports_of(path) if inside and unit_of(module)]
    assert not inner, "\n".join(inner)


@pytest.mark.parametrize("unit", ["study.schema", "study.storage", "study.data", "study.metrics", "study.trial",
                                  "search_spaces", "analysis"])
def test_importing_a_package_loads_no_module_of_a_layer_above_it(unit):
    code = (f"import importlib, json, sys; importlib.import_module({unit!r}); "
            "print(json.dumps(sorted(sys.modules)))")
    if unit == "analysis":  # the report's modules, not only the package's __init__
        code = code.replace("importlib.import_module('analysis'); ",
                            "[importlib.import_module(m) for m in ('analysis.load', 'analysis.report', "
                            "'analysis.figures', 'analysis.tables', 'analysis.stats', 'analysis.synthetic')]; ")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout)
    allowed = ONLY.get(unit)
    above = sorted(m for m in loaded if unit_of(m) not in (None, "study", unit)
                   and (RANK[unit_of(m)] >= RANK[unit] or (allowed is not None and unit_of(m) not in allowed)))
    assert not above, f"import {unit} loads {above}"
    if unit in ("study.schema", "analysis"):
        heavy = sorted({m.split(".")[0] for m in loaded} & {"jax", "flax", "ray", "optax", "torch"})
        assert not heavy, f"import {unit} loads {heavy}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule can fail: an import of study.sweep from study.storage is named as an upward edge."""
    probe = tmp_path / "study" / "storage" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import pandas\n\n\ndef f():\n    from study import sweep, schema\n")
    assert edges([probe], root=tmp_path) == [("study.storage", "study.sweep", "study/storage/probe.py:5"),
                                             ("study.storage", "study.schema", "study/storage/probe.py:5")]
    assert imports_of(probe, tmp_path)[-1] == ("study.schema", 5, True)
