"""Self-contained offline HTML benchmark report (no scripts, styles or fonts from outside;
figures are inline base64 PNGs, each an ``<img alt>`` inside a ``<figure>`` with caption).

Contents: the leaderboard table; per data set the FSC curves of every method; per method x
data set the latent embedding, confusion matrix, population bars, central slices of the
class maps beside the true volumes, and the states mapped back into each tomogram; for a
ladder run (:mod:`tomohet.bench.ladder`) heat maps of ARI and fraction of the oracle.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.bench import figures
from tomohet.bench.datasets import BenchDataset
from tomohet.bench.records import MethodRun
from tomohet.bench.scoring import METRIC_LABELS, scoring_mask
from tomohet.io.atomic import atomic_write_text

__all__ = ["write_report", "render_report", "tree_section", "mapback_section", "render_page",
           "append_sections"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;
color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f0f0f0}td.t{text-align:left}tr.oracle{background:#f7f7e8}
tr.error{background:#fbeaea}.scroll{overflow-x:auto}
figure{display:inline-block;margin:6px;vertical-align:top;border:1px solid #eee;padding:4px}
figcaption{font-size:11px;color:#555;max-width:480px}
img{max-width:100%}pre{background:#fbeaea;padding:6px;white-space:pre-wrap;font-size:11px}
details{margin:0.3em 0 1em}summary{cursor:pointer;font-size:12px;color:#336}
th[colspan]{background:#e4e8f0;text-align:center}
"""


def _figure(b64: str, alt: str, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(alt, quote=True)}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(caption)}'
            "</figcaption></figure>")


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "" if not np.isfinite(v) else f"{v:.3g}"
    return html.escape(str(v))


# the leaderboard's main table: (group heading, columns); every other column is in the
# "all columns" table that opens on demand
_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("run", ("method", "dataset", "status")),
    ("discrete", ("ari", "nmi", "pop_err_max")),
    ("vs oracle", ("ari_frac_oracle", "fsc_auc_frac_oracle")),
    ("continuous", ("rank_corr", "neigh_sim")),
    ("maps", ("fsc_auc", "fsc_res_A")),
    ("cost", ("wall_s", "peak_mem_MB")),
]


def _label(c: str) -> str:
    if c.endswith("_frac_oracle") and c[: -len("_frac_oracle")] in METRIC_LABELS:
        return f"{METRIC_LABELS[c[: -len('_frac_oracle')]]} / oracle"
    return METRIC_LABELS.get(c, c)


def _rows_html(df: pd.DataFrame, cols: list[str]) -> str:
    body = []
    for _, r in df.iterrows():
        cls = "oracle" if r.get("method") == "oracle" else (
            "error" if r.get("status") == "error" else "")
        cells = "".join(
            f'<td class="{"t" if isinstance(r[c], str) else ""}">{_fmt(r[c])}</td>'
            for c in cols)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return "".join(body)


def _table(df: pd.DataFrame) -> str:
    """The leaderboard: grouped headline columns that fit the page (a column with no
    value in any row is left out), then every column in a table that opens on demand."""
    def has(c: str) -> bool:
        return c in df.columns and bool(df[c].notna().any()) and not (
            c == "status" and (df[c] == "ok").all())

    groups = [(g, [c for c in cols if has(c)]) for g, cols in _GROUPS]
    groups = [(g, cols) for g, cols in groups if cols]
    main = [c for _, cols in groups for c in cols]
    top = "".join(f'<th colspan="{len(cols)}">{html.escape(g)}</th>' for g, cols in groups)
    head = "".join(f"<th>{html.escape(_label(c))}</th>" for c in main)
    table = (f"<table><thead><tr>{top}</tr><tr>{head}</tr></thead>"
             f"<tbody>{_rows_html(df, main)}</tbody></table>")
    rest = [c for c in df.columns if c not in main]
    if not rest:
        return table
    every = list(dict.fromkeys(["method", "dataset", *rest]))
    every = [c for c in every if c in df.columns]
    head_all = "".join(f"<th>{html.escape(_label(c))}</th>" for c in every)
    return (table + f"<details><summary>All {len(df.columns)} columns (accuracy, "
            "population errors, fractions of the oracle, resources, errors)</summary>"
            f'<div class="scroll"><table><thead><tr>{head_all}</tr></thead>'
            f"<tbody>{_rows_html(df, every)}</tbody></table></div></details>")


def _matched_class_volumes(run: MethodRun, ds: BenchDataset
                           ) -> tuple[list[str], np.ndarray] | None:
    """Class volumes reordered so that entry s is the class matched to true state s, with
    their labels (``class <label>``)."""
    if run.class_volumes is None:
        return None
    vols = np.asarray(run.class_volumes)
    order = list(range(len(vols)))
    if run.labels is not None and ds.n_states > 1:
        from tomohet.metrics import hungarian_mapping

        p_vals = np.unique(run.labels)
        mapping = hungarian_mapping(ds.states, run.labels)  # encoded pred -> encoded true
        matched = [int(p_vals[j]) for j, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
        rest = [int(v) for v in p_vals if int(v) not in matched]
        order = [o for o in matched + rest if 0 <= o < len(vols)] or order
    return [f"class {o}" for o in order], vols[order]


def _true_rows(ds: BenchDataset) -> tuple[list[str], np.ndarray] | None:
    """True volumes to show: each state's, or for continuous data the volumes at the
    10/50/90% quantiles of the coordinates."""
    vc = ds.volume_coords
    if ds.kind == "continuous" and vc is not None and ds.volume_fn is not None:
        q = np.quantile(vc, [0.1, 0.5, 0.9], axis=0)
        return ["true c q10", "true c q50", "true c q90"], np.asarray(
            ds.volumes_for(np.zeros(3, dtype=np.int64), q))
    if ds.state_volumes is None:
        return None
    vols = np.asarray(ds.state_volumes)[:8]
    return [f"true state {k}" for k in range(len(vols))], vols


def _slice_rows(run: MethodRun, ds: BenchDataset) -> list[tuple[list[str], np.ndarray]] | None:
    cls = _matched_class_volumes(run, ds)
    if cls is not None:
        true = _true_rows(ds)
        return ([true] if true is not None else []) + [(cls[0][:8], cls[1][:8])]
    if run.examples is not None:
        pred, true_v = (np.asarray(x) for x in run.examples)
        idx = [] if run.fsc_index is None else list(run.fsc_index[: len(pred)])
        names = [f"ptcl {i}" for i in idx] or [f"ptcl {j}" for j in range(len(pred))]
        return [([f"true {n}" for n in names], true_v), ([f"pred {n}" for n in names], pred)]
    return None


def _method_figures(run: MethodRun, ds: BenchDataset) -> list[str]:
    """Figures of one method on one data set (HTML snippets)."""
    out: list[str] = []
    tag = f"{run.method} on {ds.name}"
    coords, states = ds.coords, ds.states
    discrete_colour = ds.kind != "continuous"  # mixed data: coloured by state
    truth_colour = states if discrete_colour or coords is None else coords[:, 0]
    if run.latent is not None:
        out.append(_figure(
            figures.latent_scatter(run.latent, truth_colour, discrete_colour, tag),
            f"latent embedding of {tag}",
            f"Latent space of {tag} (PCA to 2D when Z > 2), coloured by the true "
            f"{'state' if discrete_colour else 'coordinate c0'}."))
    if run.labels is not None and ds.n_states > 1:
        from tomohet.metrics import confusion_matrix

        cm = confusion_matrix(states, run.labels, match=True)
        out.append(_figure(figures.confusion_heatmap(cm, tag), f"confusion matrix of {tag}",
                           "Confusion matrix, predicted classes in Hungarian-matched order."))
        out.append(_figure(
            figures.population_bars(cm.sum(1) / cm.sum(), cm.sum(0) / cm.sum(), tag),
            f"population bars of {tag}", "True vs predicted (matched) class fractions."))
    rows = _slice_rows(run, ds)
    if rows is not None:
        out.append(_figure(figures.central_slices(rows, tag), f"central slices of {tag}",
                           "Central XY / XZ / YZ slices: true volumes (top) beside the "
                           "method's maps (matched order)."))
    out.append(_evidence(run, ds, tag))
    out.append(_tomogram_figure(run, ds, tag))
    return [o for o in out if o]


def _evidence(run: MethodRun, ds: BenchDataset, tag: str) -> str:
    """Where the classes differ, from the method's half-set maps (``half_volumes_``), and
    whether they differ above noise (:mod:`tomohet.bench.evidence`)."""
    hv = run.half_volumes
    if hv is None or hv.ndim != 5 or hv.shape[0] < 2:
        return ""
    from tomohet.bench.evidence import class_evidence
    ev = class_evidence(hv, scoring_mask(hv.shape[-1]))
    img = figures.class_differences(ev.pairs, ev.where, ev.curves, ev.threshold, ev.z,
                                    ds.pixel_size_A, tag)
    return (f'<p class="evidence"><b>{html.escape(ev.summary())}</b></p>' + _figure(
        img, f"class differences of {tag}",
        "Where the classes differ: per pair of classes, the mean of the two half-set "
        "difference maps weighted by their local correlation (maximum projections), and "
        "the FSC between the half-set differences; z <= 3: no difference above noise; "
        "z > 3: the difference reproduces between half sets (which classifying one-state "
        "data can also produce)."))


def _tomogram_figure(run: MethodRun, ds: BenchDataset, tag: str) -> str:
    t = ds.truth
    if not {"x_A", "y_A"}.issubset(t.columns):
        pos = np.asarray(ds.particles.position_A)
        x, y = pos[:, 0], pos[:, 1]
    else:
        x, y = t["x_A"].to_numpy(float), t["y_A"].to_numpy(float)
    tomo = (t["tomogram"].astype(str).to_numpy() if "tomogram" in t.columns
            else np.asarray(ds.particles.tomo_names))
    discrete = ds.kind != "continuous"
    truth = ds.states if discrete or ds.coords is None else ds.coords[:, 0]
    pred, pred_discrete = None, True
    if run.labels is not None and discrete and ds.n_states > 1:
        pred = figures.relabel_to_truth(ds.states, run.labels)
    elif run.latent is not None:
        pred, pred_discrete = figures.embed_2d(run.latent, 0)[0][:, 0], False
    elif run.labels is not None:
        pred = run.labels
    img = figures.tomogram_maps(x, y, tomo, truth, pred, discrete, pred_discrete)
    return _figure(img, f"tomogram map of {tag}",
                   f"Particle positions per tomogram (x, y in A): truth (left) and {tag} "
                   "(right: matched class, or latent PC1 for continuous outputs).")


def _dataset_section(ds: BenchDataset, runs: list[MethodRun]) -> str:
    parts = [f'<h2 id="{html.escape(ds.name)}">Data set {html.escape(ds.name)}</h2>',
             f"<p>{ds.kind}; {ds.n_particles} particles; {ds.n_states} state(s); "
             f"pixel {ds.pixel_size_A:.3g} A, box {ds.particles.optics.box}.</p>"]
    curves = {r.method: r.fsc.curves for r in runs if r.fsc is not None}
    if curves:
        parts.append(_figure(figures.fsc_curves(curves, ds.pixel_size_A, ds.name),
                             f"FSC curves on {ds.name}",
                             "Per-particle FSC against the true volume: mean +/- sd over "
                             "a seeded subset of particles; dashed line 0.5."))
    for run in runs:
        parts.append(f"<h3>{html.escape(run.method)} on {html.escape(ds.name)}</h3>")
        if run.error:
            parts.append(f"<pre>{html.escape(run.error)}</pre>")
            continue
        parts.extend(_method_figures(run, ds))
    return "\n".join(parts)


def _ladder_section(ladder: pd.DataFrame) -> str:
    """Heat maps of ARI and of ARI / oracle ARI over the ladder (mass x SNR per N)."""
    parts = ['<h2 id="ladder">Small-component ladder: detection limits</h2>',
             "<p>Each cell is a simulated complex whose states differ by removable "
             "components of the given fraction of its mass, at the given SNR per tilt "
             "image at 0 degrees; one panel per method and number of particles N. "
             "Grey: not run or failed.</p>"]
    if "ari" in ladder.columns:
        parts.append(_figure(figures.ladder_heatmaps(ladder, "ari"), "ladder ARI heat map",
                             "ARI against the true states per cell (oracle first)."))
    if "ari_frac_oracle" in ladder.columns:
        parts.append(_figure(
            figures.ladder_heatmaps(ladder, "ari_frac_oracle"),
            "ladder fraction of the oracle heat map",
            "ARI as a fraction of the oracle's ARI on the same data: where a method "
            "stops finding what the data hold."))
    return "\n".join(parts)


def render_report(runs: Sequence[tuple[MethodRun, BenchDataset]], leaderboard: pd.DataFrame,
                  meta: dict[str, Any] | None = None, ladder: pd.DataFrame | None = None
                  ) -> str:
    """The report as one HTML string (with a ladder section when ``ladder`` is given:
    the table written by :func:`tomohet.bench.ladder.run_ladder`)."""
    meta = meta or {}
    by_ds: dict[str, tuple[BenchDataset, list[MethodRun]]] = {}
    for run, ds in runs:
        by_ds.setdefault(ds.name, (ds, []))[1].append(run)
    info = ", ".join(f"{k}: {html.escape(str(v))}" for k, v in meta.items())
    sections = [_dataset_section(ds, rs) for ds, rs in by_ds.values()]
    if ladder is not None and len(ladder):
        sections.insert(0, _ladder_section(ladder))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>tomohet benchmark</title><style>{_CSS}</style></head><body>"
        f"<h1>tomohet benchmark</h1><p>{info}</p><h2>Leaderboard</h2>"
        "<p>Scores against the simulation truth; <code>*_frac_oracle</code> is the score as "
        "a fraction of the oracle (Bayes classifier knowing the true volumes).</p>"
        f"{_table(leaderboard)}\n" + "\n".join(sections) + "</body></html>\n")


def write_report(path: str | Path, runs: Sequence[tuple[MethodRun, BenchDataset]],
                 leaderboard: pd.DataFrame, meta: dict[str, Any] | None = None,
                 ladder: pd.DataFrame | None = None) -> Path:
    """Write :func:`render_report` to ``path`` atomically."""
    p = Path(path)
    atomic_write_text(p, render_report(runs, leaderboard, meta, ladder))
    return p


def tree_section(png: bytes, table: pd.DataFrame) -> str:
    """HTML section of a hierarchical classification (:mod:`tomohet.analysis.tree`):
    the drawn tree and its node table."""
    import base64

    cols = [c for c in ("node", "particles", "fraction_of_parent", "resolution_A", "parent")
            if c in table.columns]
    return ('<h2 id="tree">Hierarchical classification</h2>' + _figure(
        base64.b64encode(png).decode("ascii"), "classification tree",
        "Each node: a class, with the central XY | XZ sections of its map, its particles "
        "(share of the node above) and the resolution where the FSC of its half maps "
        "drops below 0.143. Dashed: a further class merged into a re-classification.")
        + _table(table[cols]))


def mapback_section(pictures: Sequence[tuple[str, bytes]], files: Sequence[str] = ()) -> str:
    """HTML section of ``tomohet mapback``: one overview picture per tomogram."""
    import base64

    parts = ['<h2 id="mapback">States mapped back into the tomograms</h2>']
    if files:
        parts.append("<p>ChimeraX scripts and ArtiaX particle lists: "
                     + ", ".join(f"<code>{html.escape(f)}</code>" for f in files) + "</p>")
    for name, png in pictures:
        parts.append(_figure(base64.b64encode(png).decode("ascii"),
                             f"map-back overview of {name}",
                             f"Tomogram {name}: particle positions projected along Z, Y "
                             "and X (A from the tomogram corner), coloured by state."))
    return "\n".join(parts)


def render_page(title: str, sections: Sequence[str]) -> str:
    """A self-contained page in the report's style around ready HTML ``sections``."""
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>" + "\n".join(sections) + "</body></html>\n")


def append_sections(path: str | Path, sections: Sequence[str]) -> Path:
    """Insert ready HTML ``sections`` at the end of the report at ``path`` (atomically)."""
    p = Path(path)
    text = p.read_text()
    cut = text.rindex("</body>")
    atomic_write_text(p, text[:cut] + "\n".join(sections) + text[cut:])
    return p
