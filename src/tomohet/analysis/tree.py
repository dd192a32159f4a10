"""The tree of a hierarchical classification, from the ``parent`` links of run folders.

A run re-classifying classes of an earlier run (``tomohet classify ml2d RUN --classes C``)
records ``{"run": RUN, "classes": C}`` in its ``config.json``. :func:`build_tree` follows
those links from any set of run folders (parents not given are added), and gives one node
per class of every run: its population (particles, fraction of the node above), its map,
and its resolution from the FSC of its half maps (0.143). :func:`draw_tree` draws it
with the central sections of each node's map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tomohet.analysis.runs import RunFolder, load_run_folder
from tomohet.data.sources import DataError

__all__ = ["TreeNode", "build_tree", "node_table", "draw_tree", "half_map_resolution"]


@dataclass
class TreeNode:
    """One node: the input (``cls`` 0) or one class of one run."""

    key: str  # "input" or "<run folder>#<class>"
    label: str
    run: Path | None
    cls: int
    n_particles: int
    map_path: Path | None = None
    resolution_A: float | None = None
    parent: str | None = None  # key of the node above
    extra_parents: list[str] = field(default_factory=list)  # further merged classes
    children: list[str] = field(default_factory=list)
    depth: int = 0

    def fraction_of(self, nodes: dict[str, TreeNode]) -> float:
        if self.parent is None:
            return 1.0
        above = sum(nodes[k].n_particles for k in [self.parent, *self.extra_parents])
        return self.n_particles / above if above else float("nan")


def half_map_resolution(half1: Path, half2: Path) -> tuple[float, float]:
    """(resolution in A at FSC 0.143, pixel size) of two half maps."""
    import torch

    from tomohet.io import read_mrc
    from tomohet.physics.fsc import fsc, resolution_at

    a, px = read_mrc(half1)
    b, _ = read_mrc(half2)
    if a.shape != b.shape:
        raise DataError(f"{half2}: shape {b.shape} differs from {half1} {a.shape}")
    curve = fsc(torch.as_tensor(a), torch.as_tensor(b))
    return resolution_at(curve.numpy(), px, 0.143), px


def _collect(paths: list[str | Path]) -> dict[Path, RunFolder]:
    """The runs given and every ancestor their ``parent`` links name."""
    runs: dict[Path, RunFolder] = {}
    todo = [Path(p) for p in paths]
    while todo:
        run = load_run_folder(todo.pop(), need=("assignments.csv",))
        if run.path in runs:
            continue
        runs[run.path] = run
        if run.parent is not None:
            parent = Path(run.parent["run"])
            if not parent.is_dir():
                raise DataError(f"{run.path / 'config.json'}: field parent.run: {parent} "
                                "is not a folder (moved or deleted?)")
            todo.append(parent)
    return runs


def _class_nodes(run: RunFolder) -> list[TreeNode]:
    labels = run.labels()
    out = []
    for c in run.classes:
        node = TreeNode(key=f"{run.path}#{c}", label=f"{run.path.name} class {c}", run=run.path,
                        cls=c, n_particles=int((labels == c).sum()), map_path=run.class_map(c))
        halves = run.half_maps(c)
        if halves is not None:
            node.resolution_A = half_map_resolution(*halves)[0]
        out.append(node)
    return out


def build_tree(paths: list[str | Path]) -> dict[str, TreeNode]:
    """Nodes keyed by :attr:`TreeNode.key`, the input node ``"input"`` first.

    Several root runs (no parent) hang under the one input node; a run whose parent took
    several classes hangs under the first, the others listed in ``extra_parents``.
    """
    runs = _collect(paths)
    roots = [r for r in runs.values() if r.parent is None]
    inputs = {str(r.input.get("path")) for r in roots}
    n_root = max((len(r.labels()) for r in roots), default=0)
    nodes: dict[str, TreeNode] = {"input": TreeNode(
        key="input", label=f"input: {Path(sorted(inputs)[0]).name}" if inputs else "input",
        run=None, cls=0, n_particles=n_root)}
    for path in sorted(runs, key=lambda p: _depth(runs, p)):
        run = runs[path]
        if run.parent is None:
            above, extra = "input", []
        else:
            keys = [f"{Path(run.parent['run']).resolve()}#{int(c)}"
                    for c in run.parent["classes"]]
            missing = [k for k in keys if k not in nodes]
            if missing:
                raise DataError(f"{run.path / 'config.json'}: field parent.classes: "
                                f"{missing[0].split('#')[1]} is not a class of "
                                f"{run.parent['run']}")
            above, extra = keys[0], keys[1:]
        for node in _class_nodes(run):
            node.parent, node.extra_parents = above, extra
            node.depth = nodes[above].depth + 1
            nodes[above].children.append(node.key)
            nodes[node.key] = node
    return nodes


def _depth(runs: dict[Path, RunFolder], path: Path) -> int:
    d, run = 0, runs[path]
    while run.parent is not None and d <= len(runs):
        run = runs[Path(run.parent["run"]).resolve()]
        d += 1
    return d


def node_table(nodes: dict[str, TreeNode]) -> pd.DataFrame:
    """One row per node: run, class, depth, particles, fraction of the node above,
    resolution, map."""
    rows = []
    for n in nodes.values():
        rows.append({
            "node": n.label, "run": "" if n.run is None else str(n.run), "class": n.cls,
            "depth": n.depth, "particles": n.n_particles,
            "fraction_of_parent": round(n.fraction_of(nodes), 4),
            "resolution_A": None if n.resolution_A is None else round(n.resolution_A, 1),
            "map": "" if n.map_path is None else str(n.map_path),
            "parent": "" if n.parent is None else nodes[n.parent].label})
    return pd.DataFrame(rows)


def _layout(nodes: dict[str, TreeNode]) -> dict[str, tuple[float, float]]:
    """x: leaves in depth-first order, a parent above the middle of its children;
    y: -depth."""
    pos: dict[str, tuple[float, float]] = {}
    next_leaf = [0.0]

    def place(key: str) -> float:
        node = nodes[key]
        kids = node.children
        x = float(np.mean([place(k) for k in kids])) if kids else next_leaf[0]
        if not kids:
            next_leaf[0] += 1.0
        pos[key] = (x, -float(node.depth))
        return x

    place("input")
    return pos


def _sections(path: Path) -> np.ndarray:
    """Central XY and XZ sections side by side (D, 2D)."""
    from tomohet.io import read_mrc

    v, _ = read_mrc(path)
    d = v.shape[0] // 2
    return np.concatenate([v[d], v[:, v.shape[1] // 2, :]], axis=1)


def draw_tree(nodes: dict[str, TreeNode], path: Path | None = None) -> bytes:
    """The tree as a PNG (bytes; also written atomically to ``path`` when given): per node
    the central XY | XZ sections of its map, its particles and share of the node above,
    and its resolution."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = _layout(nodes)
    width = max(x for x, _ in pos.values()) + 1
    depth = max(-y for _, y in pos.values()) + 1
    fig = plt.figure(figsize=(max(4.0, 2.3 * width), 2.4 * depth))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-depth + 0.45, 0.55)
    ax.axis("off")
    for key, node in nodes.items():
        for above in ([node.parent] if node.parent else []) + node.extra_parents:
            (x0, y0), (x1, y1) = pos[above], pos[key]
            ax.plot([x0, x1], [y0 - 0.1, y1 + 0.32], color="#888", lw=1,
                    ls="-" if above == node.parent else "--")
    for key, node in nodes.items():
        x, y = pos[key]
        text = f"{node.label}\n{node.n_particles} particles"
        if node.parent is not None:
            text += f" ({100 * node.fraction_of(nodes):.0f}%)"
        if node.resolution_A is not None:
            text += f"\nFSC 0.143: {node.resolution_A:.0f} A"
        ax.text(x, y - 0.12, text, ha="center", va="top", fontsize=7)
        if node.map_path is not None:
            fx = (x + 0.6) / (width + 0.2)
            fy = (y + depth - 0.45) / depth
            w, h = 0.8 / (width + 0.2), 0.32 / depth
            inset = fig.add_axes((fx - w / 2, fy - 0.1 / depth, w, h))
            inset.imshow(_sections(node.map_path), cmap="gray")
            inset.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    png = buf.getvalue()
    if path is not None:
        from tomohet.io.atomic import atomic_write_bytes

        atomic_write_bytes(path, png)
    return png
