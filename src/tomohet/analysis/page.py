"""A self-contained HTML page of figures (PNGs embedded as base64), written atomically."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["png_data_uri", "figure_uri", "scatter_figure", "slices_figure", "write_page"]


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_uri(fig: Any, dpi: int = 90) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return png_data_uri(buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_figure(coords: np.ndarray, labels: np.ndarray | None, title: str,
                   axis_names: tuple[str, str] = ("1", "2"),
                   marks: np.ndarray | None = None) -> str:
    """2D scatter coloured by ``labels`` (-1 grey), ``marks`` (n, 2) drawn as a red path."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ok = np.isfinite(coords).all(1)
    c = None if labels is None else np.asarray(labels)[ok]
    kw = {} if c is None else {"c": c, "cmap": "tab10"}
    ax.scatter(coords[ok, 0], coords[ok, 1], s=4, alpha=0.7, linewidths=0, **kw)
    if marks is not None and len(marks):
        ax.plot(marks[:, 0], marks[:, 1], "r.-", lw=1)
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return figure_uri(fig)


def slices_figure(slices: np.ndarray, titles: list[str]) -> str:
    """Rows of central sections (n, D, 3D) -> one PNG."""
    plt = _plt()
    n = len(slices)
    fig, axes = plt.subplots(n, 1, figsize=(4.5, 1.5 * n + 0.2), squeeze=False)
    for ax, img, t in zip(axes[:, 0], slices, titles, strict=True):
        ax.imshow(img, cmap="gray")
        ax.set_title(t, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return figure_uri(fig)


def write_page(path: str | Path, title: str, sections: list[tuple[str, str]]) -> Path:
    """``sections``: (heading, HTML body) pairs; an ``<img>`` body is a data URI."""
    from tomohet.io.atomic import atomic_write_text

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;margin:1.5em;max-width:1100px}"
             "img{max-width:100%;margin:4px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}"
             ".warn{color:#a00;font-weight:bold}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>\n{body}")
    parts.append("</body></html>\n")
    out = Path(path)
    atomic_write_text(out, "\n".join(parts))
    return out


def img(uri: str, alt: str = "") -> str:
    return f"<img src='{uri}' alt='{html.escape(alt)}'>"


def table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
