"""The two particle-set types every reader produces and every method consumes.

:class:`TiltSeriesParticles` holds per-particle metadata and per-tilt-image metadata in
padded ``(N, T)`` arrays (``T`` = most tilts of any particle; ``visible`` marks real images).
Per image ``(n, t)`` the full RELION rotation is ``tilt_rotation[n, t] @ rotation[n]`` and
``defocus_*`` already include the particle's depth offset. Images stay on disk in an
:class:`~tomohet.data.sources.ImageSource` until a batch asks for them.

:class:`SubtomogramParticles` holds 3D subtomograms with optional 3D CTF/weight volumes.

Methods never touch whole arrays of images: they iterate ``particles.batches(size)``
(or a subset's), which makes sharding over processes a matter of choosing indices.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from tomohet.data.sources import DataError, ImageSource, VolumeSource
from tomohet.physics.ctf import CtfParams

__all__ = ["TiltSeriesParticles", "SubtomogramParticles", "TiltBatch", "SubtomoBatch", "Optics",
           "NoiseProfile"]


@dataclass
class Optics:
    """Microscope and image constants of a data set."""

    pixel_size_A: float
    box: int
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    ctf_premultiplied: bool = False
    dose_weighted: bool = False

    @property
    def ctf_params(self) -> CtfParams:
        return CtfParams(self.voltage_kv, self.cs_mm, self.amplitude_contrast)


@dataclass
class TiltBatch:
    """A batch of B particles with T tilt slots, tensors on one device."""

    index: np.ndarray  # (B,) particle indices into the set
    images: torch.Tensor  # (B, T, D, D) real, zeros where not visible
    rotation: torch.Tensor  # (B, T, 3, 3) full RELION matrices
    defocus_u_A: torch.Tensor  # (B, T)
    defocus_v_A: torch.Tensor
    defocus_angle_deg: torch.Tensor
    dose_e_per_A2: torch.Tensor
    tilt_deg: torch.Tensor
    ctf_scale: torch.Tensor
    shift_A: torch.Tensor  # (B, T, 2)
    visible: torch.Tensor  # (B, T) bool
    particle_rotation: torch.Tensor | None = None  # (B, 3, 3) reference -> tomogram


@dataclass
class SubtomoBatch:
    index: np.ndarray
    volumes: torch.Tensor  # (B, D, D, D)
    weights: torch.Tensor | None  # (B, D, D, D//2+1) rfft-layout CTF^2/wedge weights
    rotation: torch.Tensor  # (B, 3, 3)
    # (B, D, D, D//2+1) relative noise power per voxel (NoiseProfile); None: white per shell
    noise_power: torch.Tensor | None = None


@dataclass
class NoiseProfile:
    """Relative noise power per Fourier voxel of subtomograms, per tomogram.

    In a subtomogram the noise is not white within a resolution shell: how many tilt
    images overlap at a voxel, and how the gridding spread them, varies with the voxel's
    direction (e.g. 3-6x within a shell for a density-normalised back-projection, ~2x for
    RELION 4 pseudo-subtomograms after their ``sum CTF^2`` factor). The pattern is fixed in
    the tomogram frame, so it is shared by the particles of a tilt series.
    ``power`` (G, D, D, D//2+1): mean 1 over each shell's measured voxels; ``tomograms``:
    the G tomogram names, or ``["*"]`` for one profile shared by all. Estimated by
    :func:`tomohet.methods.noise_profile.estimate_noise_profile`.
    """

    tomograms: list[str]
    power: torch.Tensor

    def for_tomograms(self, names: list[str]) -> torch.Tensor:
        """(B, D, D, D//2+1) profile of each of ``names``: its own row, else the row
        ``"*"`` (one profile pooled over every tomogram) if there is one, else 1."""
        row = {t: i for i, t in enumerate(self.tomograms)}
        pooled = row.get("*", -1)
        pick = torch.as_tensor([row.get(t, pooled) for t in names])
        out = self.power[pick.clamp_min(0)].clone()
        out[pick < 0] = 1.0
        return out


def _f32(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


@dataclass
class TiltSeriesParticles:
    names: list[str]
    tomo_names: list[str]
    position_A: np.ndarray  # (N, 3) relative to the tomogram centre
    rotation: np.ndarray  # (N, 3, 3) reference -> tomogram frame
    tilt_rotation: np.ndarray  # (N, T, 3, 3) tomogram -> tilt image frame
    tilt_deg: np.ndarray  # (N, T)
    dose_e_per_A2: np.ndarray  # (N, T)
    defocus_u_A: np.ndarray  # (N, T)
    defocus_v_A: np.ndarray
    defocus_angle_deg: np.ndarray
    ctf_scale: np.ndarray  # (N, T)
    # (N, T, 2) where the particle centre sits in each image relative to the box centre, in A
    # (x, y); RELION's rlnOriginX/YAngst is the opposite: shift_A = -origin_A
    shift_A: np.ndarray
    visible: np.ndarray  # (N, T) bool
    image_index: np.ndarray  # (N, T) int, -1 where absent
    images: ImageSource
    optics: Optics
    table: pd.DataFrame = field(default_factory=pd.DataFrame)  # per particle, original columns
    meta: dict[str, Any] = field(default_factory=dict)  # format-specific (for writing back)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ basics
    @property
    def n_particles(self) -> int:
        return len(self.names)

    @property
    def n_tilts(self) -> int:
        return int(self.visible.shape[1])

    def __len__(self) -> int:
        return self.n_particles

    def validate(self) -> None:
        n, t = self.visible.shape
        checks = {
            "position_A": (n, 3), "rotation": (n, 3, 3), "tilt_rotation": (n, t, 3, 3),
            "tilt_deg": (n, t), "dose_e_per_A2": (n, t), "defocus_u_A": (n, t),
            "defocus_v_A": (n, t), "defocus_angle_deg": (n, t), "ctf_scale": (n, t),
            "shift_A": (n, t, 2), "image_index": (n, t),
        }
        src = self.meta.get("source", "particle set")
        for name, shape in checks.items():
            arr = np.asarray(getattr(self, name))
            if arr.shape != shape:
                raise DataError(f"{src}: field {name} has shape {arr.shape}, expected {shape}")
            if arr.dtype.kind == "f" and not np.isfinite(arr[self.visible] if arr.ndim > 1
                                                         and arr.shape[:2] == (n, t)
                                                         else arr).all():
                raise DataError(f"{src}: field {name} contains NaN or inf")
        if len(self.tomo_names) != n:
            raise DataError(f"{src}: {len(self.tomo_names)} tomogram names for {n} particles")
        if (self.image_index[self.visible] < 0).any():
            raise DataError(f"{src}: a visible tilt has no image")

    def tilts_per_particle(self) -> np.ndarray:
        return self.visible.sum(axis=1)

    def full_rotation(self) -> np.ndarray:
        """(N, T, 3, 3) reference -> tilt-image matrices."""
        return np.einsum("ntij,njk->ntik", self.tilt_rotation, self.rotation)

    def subset(self, index: np.ndarray | list[int]) -> TiltSeriesParticles:
        """A new set with particles ``index`` (sharing the same image source)."""
        idx = np.asarray(index, dtype=np.int64)
        per_particle = {
            "position_A", "rotation", "tilt_rotation", "tilt_deg", "dose_e_per_A2",
            "defocus_u_A", "defocus_v_A", "defocus_angle_deg", "ctf_scale", "shift_A",
            "visible", "image_index",
        }
        kwargs: dict[str, Any] = {k: np.asarray(getattr(self, k))[idx] for k in per_particle}
        kwargs["names"] = [self.names[i] for i in idx]
        kwargs["tomo_names"] = [self.tomo_names[i] for i in idx]
        kwargs["table"] = (self.table.iloc[idx].reset_index(drop=True)
                           if len(self.table) else self.table)
        kwargs["meta"] = dict(self.meta, subset_of=self.n_particles)
        return replace(self, **kwargs)

    def with_visible(self, visible: np.ndarray) -> TiltSeriesParticles:
        """Same set with some tilts switched off (must be a subset of the current ones)."""
        vis = np.asarray(visible, dtype=bool) & self.visible
        return replace(self, visible=vis)

    # ------------------------------------------------------------------ batches
    def batch(self, index: np.ndarray, device: torch.device | str = "cpu") -> TiltBatch:
        idx = np.asarray(index, dtype=np.int64)
        vis = self.visible[idx]
        img_idx = np.where(vis, self.image_index[idx], -1)
        b, t = vis.shape
        images = self.images.read(img_idx.reshape(-1)).reshape(b, t, self.optics.box,
                                                               self.optics.box)
        full = np.einsum("ntij,njk->ntik", self.tilt_rotation[idx], self.rotation[idx])
        return TiltBatch(
            index=idx,
            images=images.to(device),
            rotation=_f32(full).to(device),
            defocus_u_A=_f32(self.defocus_u_A[idx]).to(device),
            defocus_v_A=_f32(self.defocus_v_A[idx]).to(device),
            defocus_angle_deg=_f32(self.defocus_angle_deg[idx]).to(device),
            dose_e_per_A2=_f32(self.dose_e_per_A2[idx]).to(device),
            tilt_deg=_f32(self.tilt_deg[idx]).to(device),
            ctf_scale=_f32(self.ctf_scale[idx]).to(device),
            shift_A=_f32(self.shift_A[idx]).to(device),
            visible=torch.as_tensor(vis).to(device),
            particle_rotation=_f32(self.rotation[idx]).to(device),
        )

    def batches(
        self, batch_size: int, device: torch.device | str = "cpu",
        index: np.ndarray | None = None,
    ) -> Iterator[TiltBatch]:
        """Iterate the particles (or ``index``) in batches of ``batch_size``."""
        order = np.arange(self.n_particles) if index is None else np.asarray(index)
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start : start + batch_size], device)

    def summary(self) -> dict[str, Any]:
        vis = self.visible
        tpp = vis.sum(axis=1)
        dose = self.dose_e_per_A2[vis]
        tilt = self.tilt_deg[vis]
        return {
            "kind": "2D tilt-series particles",
            "particles": self.n_particles,
            "tomograms": len(set(self.tomo_names)),
            "tilt_slots": self.n_tilts,
            "tilts_per_particle_min": int(tpp.min()) if len(tpp) else 0,
            "tilts_per_particle_max": int(tpp.max()) if len(tpp) else 0,
            "tilts_per_particle_mean": float(tpp.mean()) if len(tpp) else 0.0,
            "missing_tilt_images": int(self.n_tilts * self.n_particles - vis.sum()),
            "box": self.optics.box,
            "pixel_size_A": self.optics.pixel_size_A,
            "dose_min_e_per_A2": float(dose.min()) if dose.size else 0.0,
            "dose_max_e_per_A2": float(dose.max()) if dose.size else 0.0,
            "tilt_min_deg": float(tilt.min()) if tilt.size else 0.0,
            "tilt_max_deg": float(tilt.max()) if tilt.size else 0.0,
            "ctf_premultiplied": self.optics.ctf_premultiplied,
            "format": self.meta.get("format", "unknown"),
        }


@dataclass
class SubtomogramParticles:
    names: list[str]
    tomo_names: list[str]
    position_A: np.ndarray  # (N, 3)
    rotation: np.ndarray  # (N, 3, 3) reference -> subtomogram frame
    volumes: VolumeSource
    weights: VolumeSource | None  # 3D CTF / wedge volumes
    optics: Optics
    weight_layout: str = "centered_full"  # or "rfft" (RELION 4 / own) or "none"
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    meta: dict[str, Any] = field(default_factory=dict)
    noise_profile: NoiseProfile | None = None  # estimated from the data, never read

    @property
    def n_particles(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return self.n_particles

    def subset(self, index: np.ndarray | list[int]) -> SubtomogramParticles:
        idx = np.asarray(index, dtype=np.int64)
        vols = VolumeSource([self.volumes.files[i] for i in idx], self.volumes.shape)
        wts = (VolumeSource([self.weights.files[i] for i in idx], self.weights.shape)
               if self.weights is not None else None)
        return replace(
            self, names=[self.names[i] for i in idx],
            tomo_names=[self.tomo_names[i] for i in idx],
            position_A=self.position_A[idx], rotation=self.rotation[idx],
            volumes=vols, weights=wts,
            table=self.table.iloc[idx].reset_index(drop=True) if len(self.table) else self.table,
        )

    def batch(self, index: np.ndarray, device: torch.device | str = "cpu") -> SubtomoBatch:
        from tomohet.data.weights import weights_to_rfft

        idx = np.asarray(index, dtype=np.int64)
        vols = self.volumes.read(idx)
        w = None
        if self.weights is not None:
            w = weights_to_rfft(self.weights.read(idx), self.weight_layout, self.optics.box)
        prof = None
        if self.noise_profile is not None:
            prof = self.noise_profile.for_tomograms([self.tomo_names[i] for i in idx])
        return SubtomoBatch(
            index=idx, volumes=vols.to(device),
            weights=None if w is None else w.to(device),
            rotation=_f32(self.rotation[idx]).to(device),
            noise_power=None if prof is None else prof.to(device),
        )

    def batches(
        self, batch_size: int, device: torch.device | str = "cpu",
        index: np.ndarray | None = None,
    ) -> Iterator[SubtomoBatch]:
        order = np.arange(self.n_particles) if index is None else np.asarray(index)
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start : start + batch_size], device)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "3D subtomograms",
            "particles": self.n_particles,
            "tomograms": len(set(self.tomo_names)),
            "box": self.optics.box,
            "pixel_size_A": self.optics.pixel_size_A,
            "ctf_volumes": self.weights is not None,
            "format": self.meta.get("format", "unknown"),
        }
