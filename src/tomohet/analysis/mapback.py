"""Mapping classes and latent coordinates back into the tomograms.

Frames (one home each for the conventions, see :mod:`tomohet.physics.geometry`):

* a particle's rotation ``A`` maps reference coordinates (x, y, z) into the tomogram frame;
  its position ``p`` (A) is taken from the tomogram *corner*: RELION 5 decentres pixel
  coordinates by ``size / 2`` (:class:`~tomohet.io.tomograms.TiltSeriesInfo`), so
  ``p = position_A + centre_A`` with ``centre_A = size_px / 2 * pixel_A``;
* an MRC map opened in ChimeraX with origin 0 puts voxel (i, j, k) (x fastest) at
  ``(i, j, k) * voxel_A`` in its model frame; the reference centre is voxel ``box // 2``
  (RELION), at ``c = box // 2 * voxel_A`` along each axis;
* the copy of a map for a particle is placed by the 3x4 matrix ``[A | p - A c]``
  (``view matrix models #N,r11,r12,r13,t1,r21,...,t3``, rows of the matrix), so the
  reference centre lands on ``p`` and a feature at ``c + d`` on ``p + A d``; a tomogram
  opened with origin 0 and its voxel size lies in the same scene frame.

The ArtiaX particle list is a RELION star with ``rlnCoordinateX/Y/Z`` in tomogram pixels
(``p / pixel``), ``rlnAngleRot/Tilt/Psi`` of ``A`` (RELION ZYZ), zero origins, and the
class and latent columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomohet.data.sources import DataError

__all__ = ["TomoFrame", "Placed", "write_tomogram", "tomogram_frames", "check_coordinates",
           "placement_matrices",
           "cxc_script", "artiax_table", "overview_png", "state_colours", "latent_colours"]

COORD_COLUMNS = ("rlnCoordinateX", "rlnCenteredCoordinateXAngst", "orig_x")


@dataclass
class TomoFrame:
    """Where a tomogram's corner is and what a pixel is."""

    name: str
    centre_A: np.ndarray  # (3,) tomogram centre from the corner (A)
    pixel_A: float  # pixel of the coordinates written (A)
    tomogram_file: Path | None = None  # reconstructed tomogram, when the star names one
    tomogram_voxel_A: float | None = None

    @property
    def size_A(self) -> np.ndarray:
        return 2.0 * self.centre_A


def check_coordinates(particles: Any, source: str) -> None:
    """DataError unless the particles carry positions in their tomograms (a per-tilt star
    without ``rlnCenteredCoordinate*`` / ``rlnCoordinate*`` columns does not)."""
    fmt = particles.meta.get("format")
    if fmt in ("stopgap", "dynamo"):
        return
    tables = [particles.table, particles.meta.get("warp_rows")]
    for t in tables:
        if isinstance(t, pd.DataFrame) and any(c in t.columns for c in COORD_COLUMNS):
            return
    if fmt is None and np.any(np.asarray(particles.position_A) != 0):
        return  # an in-memory set with positions
    raise DataError(f"{source}: fields rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst "
                    "missing: the particles have no tomogram coordinates to map back to")


def _from_star(star: Path, names: list[str], binning: float) -> dict[str, TomoFrame]:
    from tomohet.io.tomograms import read_tomograms_star

    infos = read_tomograms_star(star)
    out = {}
    for name in names:
        if name not in infos:
            raise DataError(f"{star}: field rlnTomoName: tomogram {name!r} of the particles "
                            "is not in this tomograms star")
        info = infos[name]
        if not np.isfinite(info.size_px).all() or not np.isfinite(info.pixel_size_A):
            raise DataError(f"{star}: tomogram {name}: fields rlnTomoSizeX/Y/Z and "
                            "rlnTomoTiltSeriesPixelSize are needed to place particles")
        tomo_file, voxel = None, None
        rec = info.global_row.get("rlnTomoReconstructedTomogram")
        if isinstance(rec, str) and rec:
            tomo_file = Path(rec) if Path(rec).is_absolute() else (star.parent / rec)
            b = float(info.global_row.get("rlnTomoTomogramBinning", 1.0) or 1.0)
            voxel = b * info.pixel_size_A
        out[name] = TomoFrame(name, info.size_px / 2.0 * info.pixel_size_A,
                              binning * info.pixel_size_A, tomo_file, voxel)
    return out


def tomogram_frames(particles: Any, tomograms: Path | None = None,
                    binning: float = 1.0) -> dict[str, TomoFrame]:
    """Per tomogram of the particles: its centre and the pixel of the written coordinates
    (``binning`` x the tilt-series pixel). From ``tomograms`` (a RELION tomograms star) or,
    when None, from what the reader recorded (tomogram sizes of the input's tomograms star,
    or corner-relative positions for STOPGAP/Dynamo)."""
    from tomohet.io.common import tomogram_centres_A

    names = list(dict.fromkeys(particles.tomo_names))
    if tomograms is not None:
        return _from_star(Path(tomograms), names, binning)
    centres = tomogram_centres_A(particles)
    infos = particles.meta.get("relion5_tomograms") or {}
    out = {}
    for name in names:
        i = particles.tomo_names.index(name)
        info = infos.get(name)
        px = (float(info.pixel_size_A) if info is not None and np.isfinite(info.pixel_size_A)
              else float(particles.optics.pixel_size_A))
        out[name] = TomoFrame(name, centres[i], binning * px)
    return out


def placement_matrices(rotation: np.ndarray, corner_A: np.ndarray, box: int,
                       voxel_A: float) -> np.ndarray:
    """(N, 3, 4) model -> tomogram-scene matrices ``[A | p - A c]`` (module doc)."""
    rot = np.asarray(rotation, dtype=np.float64)
    c = np.full(3, (box // 2) * voxel_A)
    out = np.zeros((len(rot), 3, 4))
    out[:, :, :3] = rot
    out[:, :, 3] = np.asarray(corner_A, dtype=np.float64) - rot @ c
    return out


def state_colours(labels: np.ndarray) -> dict[int, str]:
    """Hex colour per class number (tab10 cycle)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {int(c): matplotlib.colors.to_hex(cmap((int(c) - 1) % 10))
            for c in np.unique(labels)}


def latent_colours(values: np.ndarray) -> list[str]:
    """Hex colour per particle from a latent coordinate (viridis over its 2-98% range)."""
    import matplotlib

    v = np.asarray(values, dtype=float)
    lo, hi = np.nanpercentile(v, [2, 98]) if np.isfinite(v).any() else (0.0, 1.0)
    t = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    cmap = matplotlib.colormaps["viridis"]
    return [matplotlib.colors.to_hex(cmap(x)) if np.isfinite(x) else "#888888" for x in t]


def _level(map_path: Path) -> float:
    from tomohet.io import read_mrc

    v, _ = read_mrc(map_path)
    return float(np.percentile(v, 90))


def _quoted(text: object) -> str:
    """A ChimeraX command argument: quoted when it holds spaces or quotes."""
    t = str(text)
    return f'"{t}"' if any(c in t for c in ' "\'\t') else t


def cxc_script(frame: TomoFrame, maps: list[Path], colours: list[str],
               matrices: np.ndarray, names: list[str], title: str) -> str:
    """ChimeraX command script: (the tomogram, when known, as model #1), then one copy of
    ``maps[n]`` per particle n placed by ``matrices[n]`` and coloured ``colours[n]``.
    Model numbers follow the order of opening, so it is meant for a fresh session."""
    lines = [f"# {title}", f"# tomogram {frame.name}: {len(maps)} particles; scene in A "
             "from the tomogram corner (origin 0); run in a fresh ChimeraX session",
             "close session"]
    first = 1
    if frame.tomogram_file is not None:
        lines += [f"open {_quoted(frame.tomogram_file.resolve())}",
                  f"volume #1 voxelSize {frame.tomogram_voxel_A:.6g} originIndex 0,0,0 "
                  "style image"]
        first = 2
    levels = {m: _level(m) for m in dict.fromkeys(maps)}
    for n, (m, col, mat) in enumerate(zip(maps, colours, matrices, strict=True)):
        k = first + n
        vals = ",".join(f"{x:.6g}" for x in np.asarray(mat).reshape(-1))
        lines += [f"open {_quoted(m.resolve())}",
                  f"volume #{k} originIndex 0,0,0 level {levels[m]:.6g} color {col} "
                  "style surface",
                  f"rename #{k} {_quoted(names[n])}",
                  f"view matrix models #{k},{vals}"]
    lines.append("view")
    return "\n".join(lines) + "\n"


def artiax_table(names: list[str], tomo: str, corner_A: np.ndarray, rotation: np.ndarray,
                 pixel_A: float, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """ArtiaX-readable RELION particle rows (module doc)."""
    from tomohet.io.conventions import matrix_to_relion

    ang = matrix_to_relion(np.asarray(rotation, dtype=np.float64)).reshape(-1, 3)
    pix = np.asarray(corner_A, dtype=np.float64) / pixel_A
    df = pd.DataFrame({"rlnTomoName": tomo, "rlnMicrographName": tomo,
                       "rlnTomoParticleName": list(names)})
    for k, a in enumerate("XYZ"):
        df[f"rlnCoordinate{a}"] = pix[:, k]
    for k, a in enumerate(("Rot", "Tilt", "Psi")):
        df[f"rlnAngle{a}"] = ang[:, k]
    for a in "XYZ":
        df[f"rlnOrigin{a}Angst"] = 0.0
    df["rlnPixelSize"] = pixel_A
    for name, values in columns.items():
        df[name] = np.asarray(values)
    return df


def overview_png(corner_A: np.ndarray, size_A: np.ndarray, colour_values: np.ndarray,
                 discrete: bool, title: str) -> bytes:
    """Three orthogonal projections (XY, XZ, YZ) of the particle positions (A from the
    corner) coloured by class (``discrete``) or a latent coordinate -> PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = np.asarray(corner_A, dtype=float)
    size = np.asarray(size_A, dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4),
                             gridspec_kw={"width_ratios": [size[0], size[0], size[1]]})
    pairs = ((0, 1, "X", "Y"), (0, 2, "X", "Z"), (1, 2, "Y", "Z"))
    cols = state_colours(colour_values) if discrete else None
    for ax, (i, j, a, b) in zip(axes, pairs, strict=True):
        ax.add_patch(matplotlib.patches.Rectangle((0, 0), size[i], size[j], fill=False,
                                                  ec="#999", lw=0.8))
        if discrete and cols is not None:
            for c, hexc in cols.items():
                sel = colour_values == c
                ax.scatter(pos[sel, i], pos[sel, j], s=8, color=hexc, label=f"class {c}")
        else:
            sc = ax.scatter(pos[:, i], pos[:, j], s=8, c=colour_values, cmap="viridis")
        ax.set(xlabel=f"{a} (A)", ylabel=f"{b} (A)", aspect="equal",
               xlim=(min(0, pos[:, i].min()), max(size[i], pos[:, i].max())),
               ylim=(min(0, pos[:, j].min()), max(size[j], pos[:, j].max())))
    if discrete:
        axes[0].legend(fontsize=7, markerscale=1.5, loc="upper right")
    else:
        fig.colorbar(sc, ax=axes[-1], label="latent z0")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


@dataclass
class Placed:
    """The particles of one tomogram to place: names, map and colour per particle,
    positions from the corner (N, 3), rotations (N, 3, 3), placement matrices (N, 3, 4),
    the value coloured (N,) and the extra star columns."""

    names: list[str]
    maps: list[Path]
    colours: list[str]
    corner_A: np.ndarray
    rotation: np.ndarray
    matrices: np.ndarray
    values: np.ndarray
    columns: dict[str, np.ndarray]


def write_tomogram(folder: Path, frame: TomoFrame, placed: Placed, discrete: bool,
                   title: str) -> bytes:
    """``mapback_<tomo>.cxc``, ``particles_<tomo>.star`` and ``overview_<tomo>.png`` in
    ``folder`` (each atomically) -> the PNG bytes."""
    from tomohet.io.atomic import atomic_write_bytes, atomic_write_text
    from tomohet.io.star import write_star

    t = frame.name
    atomic_write_text(folder / f"mapback_{t}.cxc", cxc_script(
        frame, placed.maps, placed.colours, placed.matrices, placed.names, title))
    table = artiax_table(placed.names, t, placed.corner_A, placed.rotation, frame.pixel_A,
                         placed.columns)
    write_star(folder / f"particles_{t}.star", {"particles": table})
    png = overview_png(placed.corner_A, frame.size_A, placed.values, discrete,
                       f"{t}: {len(placed.names)} particles")
    atomic_write_bytes(folder / f"overview_{t}.png", png)
    return png
