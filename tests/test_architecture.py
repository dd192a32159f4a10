"""The import rule of ``docs/architecture.md``, checked on the source text.

Every ``import`` / ``from ... import`` in every module under ``src/tomohet`` is parsed with
:mod:`ast`, including imports inside functions and under ``TYPE_CHECKING`` (a lazy import
is still a dependency: it only hides a cycle from the interpreter). Two rules:

* no import cycle between modules (any strongly connected component of more than one
  module fails, with the modules named);
* no upward import across layers. The layers, bottom to top (a module may import its own
  layer and any layer below; packages on the same rank are siblings and may not import
  each other)::

      tomohet (the package root: version only)
      physics            tensors in, tensors out: CTF, Fourier, projection, likelihood
      data               containers, keys, sources, batch -> tensor adapters
      io                 readers and writers of the file formats
      methods | sim      the estimators | the simulator
      metrics | analysis scores against truth | post-hoc analysis of method outputs
      bench              simulate -> run methods -> score -> report
      cli                the ``tomohet`` command

``from pkg import name`` counts as importing the submodule ``pkg.name`` when that is a
module, else the package ``pkg`` itself (as import-linter does), so a package
``__init__`` that re-exports its submodules does not make every submodule cyclic.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# rank of each top-level subpackage; equal ranks are siblings (no imports between them)
LAYERS: dict[str, int] = {
    "": 0,  # tomohet/__init__.py
    "parallel": 0,  # process groups and reductions: imports no tomohet module
    "physics": 1,
    "data": 2,
    "io": 3,
    "methods": 4, "sim": 4,
    "metrics": 5, "analysis": 5,
    "bench": 6,
    "cli": 7, "__main__": 7,
}
# outside the documented chain: below everything (parallel: the torch.distributed group,
# shards and reductions, imports no tomohet module) and above everything (__main__)
OUTSIDE_CHAIN = {"parallel": 0, "__main__": 8}
LAYERS.update(OUTSIDE_CHAIN)


def _modules(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is_package) for every module of ``tomohet``."""
    out = {}
    for path in sorted((src / "tomohet").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _resolve(name: str, modules: dict) -> str | None:
    """The longest prefix of ``name`` that is a module (``a.b.func`` -> ``a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(src: Path = SRC) -> dict[str, dict[str, int]]:
    """Module -> {imported tomohet module: line of the first such import}."""
    modules = _modules(src)
    graph: dict[str, dict[str, int]] = {}
    for mod, (path, is_pkg) in modules.items():
        package = mod if is_pkg else mod.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for t in targets:
                if t != "tomohet" and not t.startswith("tomohet."):
                    continue
                target = _resolve(t, modules)
                if target is not None and target != mod:
                    edges.setdefault(target, node.lineno)
        graph[mod] = edges
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph.get(w, {}))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """``module:line imports target`` for every import of a higher or sibling layer."""
    bad = []
    for mod, edges in graph.items():
        a = layer(mod)
        for target, line in edges.items():
            b = layer(target)
            if a != b and LAYERS[b] >= LAYERS[a]:
                bad.append(f"{mod}:{line} imports {target} ({a or 'root'} may not import {b})")
    return sorted(bad)


# ----------------------------------------------------------------------------- the rules


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_every_subpackage_has_a_layer(graph):
    unknown = sorted({layer(m) for m in graph} - set(LAYERS))
    assert not unknown, f"add {unknown} to LAYERS here and to docs/architecture.md"


def test_no_import_cycles(graph):
    found = cycles(graph)
    lines = []
    for comp in found:
        inside = [f"  {m} -> {t} (line {ln})" for m in comp for t, ln in graph[m].items()
                  if t in comp]
        lines.append(" <-> ".join(comp) + "\n" + "\n".join(inside))
    assert not found, "import cycles:\n" + "\n".join(lines)


def test_no_upward_imports(graph):
    bad = upward_imports(graph)
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_layers_match_the_documented_rule():
    doc = (SRC.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    rule = "physics → data → io → methods, sim → metrics, analysis → bench → cli"
    assert rule in doc
    ranks = [[p.strip() for p in step.split(",")] for step in rule.split("→")]
    assert {p: i + 1 for i, step in enumerate(ranks) for p in step} == {
        k: v for k, v in LAYERS.items() if k and k not in OUTSIDE_CHAIN}


# ------------------------------------------------------------- the checker itself can fail


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / "tomohet" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    src = _tree(tmp_path, {
        "__init__.py": "",
        "io/__init__.py": "",
        "io/a.py": "from tomohet.io.b import g\n",
        "io/b.py": "def g():\n    from tomohet.io import a\n    return a\n",
        "io/c.py": "from . import a\n",
    })
    g = import_graph(src)
    assert g["tomohet.io.c"] == {"tomohet.io.a": 1}  # relative import, submodule resolved
    assert cycles(g) == [["tomohet.io.a", "tomohet.io.b"]]


def test_checker_finds_upward_and_sibling_imports(tmp_path):
    src = _tree(tmp_path, {
        "__init__.py": "__version__ = '0'\n",
        "physics/__init__.py": "",
        "physics/f.py": "import tomohet\nfrom tomohet.data.particles import TiltBatch\n",
        "data/__init__.py": "",
        "data/particles.py": "from tomohet.physics.f import x\n",
        "methods/__init__.py": "",
        "methods/m.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                         "    from tomohet.sim import s\n"),
        "sim/__init__.py": "",
        "sim/s.py": "",
    })
    bad = upward_imports(import_graph(src))
    assert len(bad) == 2
    assert bad[0].startswith("tomohet.methods.m:3 imports tomohet.sim.s")
    assert bad[1].startswith("tomohet.physics.f:2 imports tomohet.data.particles")
