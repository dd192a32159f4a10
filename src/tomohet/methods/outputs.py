"""Writing a fitted method's results: maps, tables, star files and plots.

Shared by every method so that all of them leave the same files behind:
``assignments.csv`` / ``latent.csv`` keyed by the particle name the input gave,
the input star with added columns, maps as MRC, and per-iteration logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.data.sources import DataError
from tomohet.methods.base import HeterogeneityMethod, ParticleSet

__all__ = ["save_discrete", "save_continuous", "write_star_with_columns", "plot_populations",
           "MapWriteError"]


def write_star_with_columns(particles: ParticleSet, out_dir: Path,
                            columns: dict[str, Any]) -> list[Path]:
    """The input particle set in its own format with ``columns`` appended per particle."""
    from tomohet.io import write_particles

    extra = pd.DataFrame(columns)
    fmt = particles.meta.get("format")
    stem = "particles" if fmt != "dynamo" else "particles.tbl"
    name = stem if stem.endswith(".tbl") else f"{stem}.star"
    try:
        return write_particles(particles, out_dir / name, fmt=fmt, extra_columns=extra)
    except (KeyError, ValueError, NotImplementedError) as exc:
        # in-memory sets from the simulator are written as RELION 5
        if fmt is None:
            return write_particles(particles, out_dir / name, fmt="relion5", extra_columns=extra)
        raise exc


def plot_populations(history: list[dict[str, Any]], path: Path) -> None:
    """Class populations and log-likelihood per iteration (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tomohet.io.atomic import save_figure

    if not history:
        return
    it = np.arange(1, len(history) + 1)
    pops = np.array([h["populations"] for h in history], dtype=float)
    pops = pops / pops.sum(1, keepdims=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for k in range(pops.shape[1]):
        axes[0].plot(it, pops[:, k], marker="o", label=f"class {k + 1}")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("population")
    axes[0].legend(fontsize=7)
    key = "log_likelihood" if "log_likelihood" in history[0] else "changed_fraction"
    axes[1].plot(it, [h.get(key, np.nan) for h in history], marker="o")
    axes[1].set_xlabel("iteration (all runs)" if key == "changed_fraction" else "iteration")
    axes[1].set_ylabel(key.replace("_", " "))
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


class MapWriteError(RuntimeError):
    """Some maps could not be written; every table (and the other maps) was kept."""

    def __init__(self, failed: list[str], kept: list[str]) -> None:
        self.failed, self.kept = failed, kept
        super().__init__(
            f"{len(failed)} map(s) not written: {'; '.join(failed)}. "
            f"Kept: {', '.join(kept)}")


def _write_maps(method: HeterogeneityMethod, out: Path, px: float) -> tuple[list[str],
                                                                           list[str]]:
    """Class maps, half maps, class differences ``diff_i_j.mrc`` (class i minus class j),
    local resolution ``class_NNN_locres.mrc`` and, after discovery, ``focus_mask.mrc``,
    ``variance_z.mrc`` (on its small grid) and, classified region by region,
    ``region_N_mask.mrc`` (the mask region N was finally split in, redrawn from its split),
    each atomically; one that cannot be written (NaN, disk) is skipped.
    Returns (written names, 'name: reason' of those skipped)."""
    import tomohet.io

    maps: list[tuple[str, np.ndarray, float]] = []
    vols = getattr(method, "class_volumes_", None)
    if vols is not None:
        k = vols.shape[0]
        maps += [(f"class_{c + 1:03d}.mrc", vols[c].numpy(), px) for c in range(k)]
        maps += [(f"diff_{a + 1}_{b + 1}.mrc", (vols[a] - vols[b]).numpy(), px)
                 for a in range(k) for b in range(a + 1, k)]
    halves = getattr(method, "half_volumes_", None)  # (K, 2, D, D, D)
    if halves is not None:
        maps += [(f"class_{k + 1:03d}_half{h + 1}.mrc", halves[k, h].numpy(), px)
                 for k in range(halves.shape[0]) for h in range(2)]
    locres = getattr(method, "local_resolution_", None)  # set by _write_evidence
    if locres is not None:
        maps += locres.mrc_maps(px)
    focus = getattr(method, "focus_mask_", None)
    if focus is not None:
        maps.append(("focus_mask.mrc", np.asarray(focus, dtype=np.float32), px))
    found = getattr(method, "discovery_", None)
    if found is not None:
        maps.append(("variance_z.mrc", found.z.numpy(), found.pixel_size_A))
        maps += [(f"region_{i + 1}_mask.mrc", np.asarray(r, dtype=np.float32), px)
                 for i, r in enumerate(getattr(found, "split_regions", []))]
    written, failed = [], []
    for name, arr, size in maps:
        try:
            tomohet.io.write_mrc(out / name, arr, size)
        except (DataError, OSError, ValueError) as exc:
            failed.append(f"{name}: {exc}")
        else:
            written.append(name)
    return written, failed


def _region_note(method: HeterogeneityMethod, priors) -> tuple[str, int]:
    """What the region-by-region path did, from the run's history (shc: all runs):
    the regions split in two (variance-test regions and accepted held-out candidates),
    the further class splits, and which of the K classes asked stayed empty.
    -> (statement, number of regions split); ("", 0) when it did not run."""
    hist = [h for h in (getattr(method, "history_flat_", None)
                        or getattr(method, "history_", []) or []) if isinstance(h, dict)]
    regions = len({h.get("region") for h in hist if h.get("stage") == "region split"})
    if not regions:
        return "", 0
    splits = len({(h.get("split_class"), h.get("new_class")) for h in hist
                  if h.get("stage") == "class split"})
    k = len(priors) if priors is not None else 2**regions
    live = np.asarray(priors) > 0 if priors is not None else np.ones(k, dtype=bool)
    note = (f" Classified region by region: {regions} region(s) split in two"
            + (f", then {splits} class split(s) inside them" if splits else "")
            + f"; {int(live.sum())} of the {k} classes asked hold particles.")
    if not live.all():
        empty = ", ".join(str(int(c) + 1) for c in np.nonzero(~live)[0])
        note += (f" Class(es) {empty} are empty: the data show no further region or split "
                 "above noise (split='joint' runs K-class EM instead).")
    return note, regions


def _write_evidence(method: HeterogeneityMethod, out: Path, px: float) -> list[str]:
    """``summary.json`` (the verdict, :func:`tomohet.methods.evidence.run_summary`, with
    per-class resolution) and, with a focus mask, ``class_fsc_focus.csv`` (per-class
    half-map FSC inside it). Sets ``method.summary_``. Returns the names written."""
    from tomohet.io.atomic import atomic_write_text
    from tomohet.methods.evidence import focus_fsc, run_summary
    from tomohet.physics.fsc import resolution_at

    halves = getattr(method, "half_volumes_", None)
    focus = getattr(method, "focus_mask_", None)
    found = getattr(method, "discovery_", None)
    priors = getattr(method, "priors_", None)
    kept = None  # classes that hold particles (the half-set test skips empty ones)
    if halves is not None and priors is not None and (np.asarray(priors) <= 0).any():
        kept = [int(c) for c in np.nonzero(np.asarray(priors) > 0)[0]]
        halves = halves[kept]
    summary, _ = run_summary(found, halves, px, mask=focus, classes=kept)
    note, regions = _region_note(method, priors)
    if note:
        summary["regions"] = regions
        summary["statement"] = summary.get("statement", "") + note
    res = getattr(method, "resolution_A_", None)
    if res is not None:
        summary["class_resolution_A"] = [round(float(r), 1) for r in res]
    written = []
    if focus is not None and halves is not None:
        curves = focus_fsc(halves, focus)
        box = halves.shape[-1]
        table = pd.DataFrame({"frequency_per_A": np.arange(curves.shape[1]) / (box * px)})
        for c, curve in enumerate(curves):
            table[f"class_{c + 1}"] = curve
        atomic_write_text(out / "class_fsc_focus.csv", table.to_csv(index=False))
        written.append("class_fsc_focus.csv")
        summary["class_resolution_in_focus_A"] = [
            round(resolution_at(curve, px, 0.143), 1) for curve in curves]
    from tomohet.methods.locres import class_local_resolution

    locres = class_local_resolution(method, px)
    if locres is not None:
        summary.update(locres.summary())
    method.local_resolution_ = locres  # type: ignore[attr-defined]
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    method.summary_ = summary  # type: ignore[attr-defined]
    return written + ["summary.json"]


def save_discrete(method: HeterogeneityMethod, out: Path, particles: ParticleSet) -> None:
    """Posteriors, assignments, star, FSCs, iteration log and the evidence
    (``summary.json``: "no heterogeneity found above noise" or not) of a classifier, then
    its class maps, half maps, class differences and per-class local resolution
    (``class_NNN_locres.mrc``, ``local_resolution.png``, :mod:`tomohet.methods.locres`)
    and, classified region by region, ``regions.png`` (what differs in each region,
    :mod:`tomohet.methods.region_view`).

    Every table is written (atomically) before any map, so a map that cannot be written
    never costs the classification: such maps are skipped and :class:`MapWriteError`
    is raised at the end, naming what was skipped and what was kept.
    """
    from tomohet.io import write_assignments_csv
    from tomohet.io.atomic import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    labels = method.predict()
    post = method.predict_proba()
    px = particles.optics.pixel_size_A
    kept = []
    prob = pd.DataFrame(post, columns=[f"p{k + 1}" for k in range(post.shape[1])])
    prob.insert(0, "particle", list(particles.names))
    atomic_write_text(out / "posteriors.csv", prob.to_csv(index=False))
    write_assignments_csv(out / "assignments.csv", particles.names, labels=labels,
                          probabilities=post)
    max_prob = np.nan_to_num(np.nanmax(np.where(np.isnan(post), -1, post), axis=1), nan=0.0)
    stars = write_star_with_columns(particles, out, {
        "rlnClassNumber": np.where(labels >= 0, labels + 1, 0),
        "rlnMaxValueProbDistribution": np.where(labels >= 0, max_prob, 0.0),
    })
    kept += ["posteriors.csv", "assignments.csv"] + [Path(p).name for p in stars]
    history = getattr(method, "history_flat_", None) or getattr(method, "history_", [])
    atomic_write_text(out / "iterations.json", json.dumps(history, indent=1))
    kept.append("iterations.json")
    curves = getattr(method, "fsc_", None)
    if curves:
        box = particles.optics.box
        freqs = np.arange(len(curves[0])) / (box * px)
        table = pd.DataFrame({"frequency_per_A": freqs})
        for k, c in enumerate(curves):
            table[f"class_{k + 1}"] = c
        atomic_write_text(out / "class_fsc.csv", table.to_csv(index=False))
        kept.append("class_fsc.csv")
    kept += _write_evidence(method, out, px)
    plot_populations(history, out / "populations.png")
    locres = getattr(method, "local_resolution_", None)
    if locres is not None and getattr(method, "class_volumes_", None) is not None:
        from tomohet.methods.locres import plot_local_resolution

        plot_local_resolution(locres, method.class_volumes_,  # type: ignore[attr-defined]
                              out / "local_resolution.png")
    found = getattr(method, "discovery_", None)
    regions = list(getattr(found, "split_regions", []) or [])
    priors = getattr(method, "priors_", None)
    if regions and priors is not None and getattr(method, "class_volumes_", None) is not None:
        from tomohet.methods.region_view import plot_regions

        plot_regions(method.class_volumes_, priors,  # type: ignore[attr-defined]
                     [np.asarray(r) for r in regions], out / "regions.png")
    written, failed = _write_maps(method, out, px)
    if failed:
        raise MapWriteError(failed, kept + written)


def save_continuous(method: HeterogeneityMethod, out: Path, particles: ParticleSet) -> None:
    """latent.csv (+ assignments.csv when clustered) and the star with latent columns."""
    from tomohet.io import write_assignments_csv, write_latent_csv

    out.mkdir(parents=True, exist_ok=True)
    z = method.transform()
    write_latent_csv(out / "latent.csv", particles.names, z)
    labels = getattr(method, "labels_", None)
    if labels is not None:
        write_assignments_csv(out / "assignments.csv", particles.names, labels=labels)
    cols = {f"tomohetLatent{i}": z[:, i] for i in range(z.shape[1])}
    if labels is not None:
        cols["rlnClassNumber"] = labels + 1
    write_star_with_columns(particles, out, cols)
