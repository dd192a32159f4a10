"""Simulation of 2D tilt-series particles with known heterogeneity: the orchestration.

Image formation for tilt ``t`` of particle ``n`` (everything in the rfft layout)::

    X_nt = irfft( P_n(R_nt) * CTF_nt * E(dose_nt) * ctf_scale_nt ) + noise_nt,
    R_nt = tilt_matrix(tilt_t) @ A_n,   noise ~ N(0, sigma0^2 / cos(tilt_t)) white,

with ``P_n(R)`` the transform of the particle's projection (a Fourier slice of its state's
volume, or the exact projection of its atoms), ``A_n`` its orientation (reference ->
tomogram) and the CTF defocus including the particle's depth in the tilted specimen
(:func:`~tomohet.physics.ctf.depth_defocus_offset_A`). ``sigma0`` gives the configured SNR
at 0 degrees (:func:`~tomohet.sim.acquisition.sigma0_for_snr`).

Every random step draws from its own stream spawned from the seed (states, placement,
orientations, CTF, missing tilts, noise, metadata errors), so changing one setting does
not reshuffle the others; noise is drawn per particle, so results do not depend on the
batch size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from tomohet.data.particles import TiltSeriesParticles
from tomohet.data.sources import ArrayImageSource
from tomohet.physics.ctf import depth_defocus_offset_A
from tomohet.physics.geometry import matrix_to_euler, random_rotations, small_rotation, tilt_matrix
from tomohet.sim.acquisition import (
    TrueAcquisition,
    draw_missing_tilts,
    draw_tomogram_ctf,
    noise_sigma,
    sigma0_for_snr,
)
from tomohet.sim.build import build_model, particle_diameter_A
from tomohet.sim.config import SimulationConfig
from tomohet.sim.render import optics_for, render_clean
from tomohet.sim.states import HeterogeneityModel
from tomohet.sim.tomograms import assign_tomograms, place_particles
from tomohet.sim.truth import SimulatedDataset, truth_table

__all__ = ["simulate"]

_STREAMS = ("states", "placement", "orientation", "ctf", "missing", "noise", "errors", "split")


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(int(seed)).spawn(len(_STREAMS))
    return {name: np.random.default_rng(c) for name, c in zip(_STREAMS, children, strict=True)}


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(0, 2**62)))


def _true_acquisition(config: SimulationConfig, model: HeterogeneityModel,
                      rngs: dict[str, np.random.Generator]) -> TrueAcquisition:
    """States, coordinates, positions, orientations and per-image CTF/dose (exact values)."""
    n = config.n_particles
    state, coords = model.sample(n, rngs["states"])
    tomogram = assign_tomograms(n, config.n_tomograms, rngs["placement"])
    min_dist = config.min_distance_A
    if min_dist is None:
        min_dist = particle_diameter_A(model.state_volumes(), config.pixel_size_A)
    position = place_particles(state, tomogram, config.tomogram_size_A, min_dist,
                               rngs["placement"], config.clustering)
    rotation = random_rotations(n, _torch_generator(rngs["orientation"]),
                                dtype=torch.float64).numpy()
    angles = config.tilt.angles_deg()
    t = len(angles)
    tilt_rot = np.broadcast_to(tilt_matrix(torch.as_tensor(angles)).numpy(), (n, t, 3, 3)).copy()
    ctf = draw_tomogram_ctf(config.n_tomograms, config.defocus_range_um, config.astigmatism_um,
                            rngs["ctf"])
    jitter = rngs["ctf"].normal(0.0, config.defocus_tilt_sd_um * 1e4, (config.n_tomograms, t))
    depth = depth_defocus_offset_A(torch.as_tensor(tilt_rot), torch.as_tensor(position),
                                   config.handedness).numpy()
    base_u = ctf["defocus_u_A"][:, None] + jitter
    base_v = ctf["defocus_v_A"][:, None] + jitter
    visible = draw_missing_tilts((n, t), config.missing_tilt_rate, rngs["missing"], tomogram,
                                 config.missing_per_tomogram)
    return TrueAcquisition(
        state=state, coords=coords, tomogram=tomogram, position_A=position, rotation=rotation,
        tilt_rotation=tilt_rot, tilt_deg=np.broadcast_to(angles, (n, t)).copy(),
        dose_e_per_A2=np.broadcast_to(config.tilt.pre_exposure_e_per_A2(), (n, t)).copy(),
        defocus_u_A=base_u[tomogram] + depth, defocus_v_A=base_v[tomogram] + depth,
        defocus_angle_deg=np.broadcast_to(ctf["defocus_angle_deg"][tomogram, None],
                                          (n, t)).copy(),
        ctf_scale=np.ones((n, t)), visible=visible,
        tomogram_defocus_um=(ctf["defocus_u_A"] + ctf["defocus_v_A"]) / 2e4,
        tilt_defocus_u_A=base_u, tilt_defocus_v_A=base_v,
        tilt_defocus_angle_deg=np.repeat(ctf["defocus_angle_deg"][:, None], t, axis=1),
    )


def _calibrate_sigma0(model, acq: TrueAcquisition, config: SimulationConfig) -> float:
    """Noise sigma at 0 degrees from the clean images of every particle at the 0-degree slot."""
    ref = int(np.argmin(np.abs(acq.tilt_deg[0])))
    n, bs = len(acq.state), max(1, config.batch_size * 4)
    if config.snr_reference not in ("image", "projection"):
        raise ValueError(f"snr_reference must be 'image' or 'projection', "
                         f"got {config.snr_reference!r}")
    if config.snr_reference == "projection":  # signal: the density before CTF and dose
        config = config.replace(ctf=False, dose_weighting=False)
    clean = torch.cat([render_clean(model, acq, np.arange(s, min(s + bs, n)), config, [ref])
                       for s in range(0, n, bs)])[:, 0]
    return sigma0_for_snr(clean, config.snr)


def _render_all(model, acq: TrueAcquisition, config: SimulationConfig, sigma0: float,
                rng: np.random.Generator, progress: bool, stack_file: str | Path | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Noisy visible images (V, D, D) float32 and the image index (N, T), -1 if missing.

    ``stack_file``: the images go to that memory-mapped ``.npy``, one batch at a time,
    instead of an array in memory (for sets larger than RAM)."""
    n, t = acq.visible.shape
    d = config.box
    image_index = np.full((n, t), -1, dtype=np.int64)
    image_index[acq.visible] = np.arange(int(acq.visible.sum()))
    shape = (int(acq.visible.sum()), d, d)
    stack = (np.zeros(shape, dtype=np.float32) if stack_file is None else
             np.lib.format.open_memmap(stack_file, mode="w+", dtype=np.float32, shape=shape))
    seeds = np.asarray(rng.integers(0, 2**62, n), dtype=np.int64)
    sigma = torch.as_tensor(noise_sigma(sigma0, acq.tilt_deg[0]), dtype=torch.float32)
    bar = tqdm(total=n, desc="simulating", unit="ptcl", disable=not progress)
    for start in range(0, n, config.batch_size):
        idx = np.arange(start, min(start + config.batch_size, n))
        clean = render_clean(model, acq, idx, config)
        for b, i in enumerate(idx):
            g = torch.Generator().manual_seed(int(seeds[i]))
            noisy = clean[b] + torch.randn((t, d, d), generator=g) * sigma[:, None, None]
            vis = np.asarray(acq.visible[i], dtype=bool)
            stack[image_index[int(i)][vis]] = noisy[torch.as_tensor(vis)].numpy()
        bar.update(len(idx))
    bar.close()
    return stack, image_index


def _observed(acq: TrueAcquisition, config: SimulationConfig, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """Metadata handed to methods: orientation priors (N, 3, 3) and the defocus error of
    every tilt image of every tomogram (n_tomograms, T), shared by its particles (as
    a per-tilt CTF fit error; representable in RELION 5 tomogram star files)."""
    n, t = acq.defocus_u_A.shape
    rotation = acq.rotation.copy()
    if config.pose_error_deg > 0:
        v = rng.normal(0.0, config.pose_error_deg / np.sqrt(3.0), (n, 3))
        rotation = small_rotation(torch.as_tensor(v)).numpy() @ rotation
    n_tomo = acq.tilt_defocus_u_A.shape[0]
    err = rng.normal(0.0, config.defocus_error_um * 1e4, (n_tomo, t)) \
        if config.defocus_error_um else np.zeros((n_tomo, t))
    return rotation, err


def _particle_table(acq: TrueAcquisition, tomo_names: list[str], names: list[str],
                    rotation: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    euler = matrix_to_euler(torch.as_tensor(rotation)).numpy()
    halves = np.zeros(len(names), dtype=np.int64)
    halves[rng.permutation(len(names))[: len(names) // 2]] = 1
    return pd.DataFrame({
        "rlnTomoName": [tomo_names[i] for i in acq.tomogram],
        "rlnTomoParticleName": names,
        "rlnCenteredCoordinateXAngst": acq.position_A[:, 0],
        "rlnCenteredCoordinateYAngst": acq.position_A[:, 1],
        "rlnCenteredCoordinateZAngst": acq.position_A[:, 2],
        "rlnAngleRot": euler[:, 0], "rlnAngleTilt": euler[:, 1], "rlnAnglePsi": euler[:, 2],
        "rlnRandomSubset": halves + 1,
    })


def _particles(acq: TrueAcquisition, config: SimulationConfig, stack: np.ndarray,
               image_index: np.ndarray, rngs: dict[str, np.random.Generator]
               ) -> TiltSeriesParticles:
    n, t = acq.visible.shape
    tomo_names = [f"sim_TS_{i + 1:02d}" for i in range(config.n_tomograms)]
    counters = np.zeros(config.n_tomograms, dtype=np.int64)
    names = []
    for tomo in acq.tomogram:
        counters[tomo] += 1
        names.append(f"{tomo_names[tomo]}/{counters[tomo]}")
    rotation, err = _observed(acq, config, rngs["errors"])
    du, dv = acq.defocus_u_A + err[acq.tomogram], acq.defocus_v_A + err[acq.tomogram]
    tomograms = {
        tomo_names[i]: {"size_A": list(config.tomogram_size_A),
                        "tilt_deg": acq.tilt_deg[0].tolist(),
                        "pre_exposure_e_per_A2": acq.dose_e_per_A2[0].tolist(),
                        "defocus_u_A": (acq.tilt_defocus_u_A[i] + err[i]).tolist(),
                        "defocus_v_A": (acq.tilt_defocus_v_A[i] + err[i]).tolist(),
                        "defocus_angle_deg": acq.tilt_defocus_angle_deg[i].tolist(),
                        "handedness": config.handedness}
        for i in range(config.n_tomograms)}
    return TiltSeriesParticles(
        names=names, tomo_names=[tomo_names[i] for i in acq.tomogram],
        position_A=acq.position_A.copy(), rotation=rotation,
        tilt_rotation=acq.tilt_rotation.copy(), tilt_deg=acq.tilt_deg.copy(),
        dose_e_per_A2=acq.dose_e_per_A2.copy(), defocus_u_A=du, defocus_v_A=dv,
        defocus_angle_deg=acq.defocus_angle_deg.copy(), ctf_scale=acq.ctf_scale.copy(),
        shift_A=np.zeros((n, t, 2)), visible=acq.visible.copy(), image_index=image_index,
        images=ArrayImageSource(stack), optics=optics_for(config),
        table=_particle_table(acq, tomo_names, names, rotation, rngs["split"]),
        meta={"format": "relion5", "source": f"tomohet.sim:{config.name}",
              "handedness": config.handedness, "tomograms": tomograms,
              "pixel_size_A": config.pixel_size_A},
    )


def simulate(config: SimulationConfig, seed: int | None = None,
             model: HeterogeneityModel | None = None,
             progress: bool = False, stack_file: str | Path | None = None) -> SimulatedDataset:
    """Simulate a data set. ``seed`` overrides ``config.seed``; ``model`` replaces the one
    built from ``config.structure`` (it must use the config's box and pixel size);
    ``stack_file``: images rendered into that memory-mapped ``.npy`` (see
    :func:`_render_all`), same values."""
    if seed is not None:
        config = config.replace(seed=int(seed))
    if model is None:
        model = build_model(config.structure, config.box, config.pixel_size_A)
    if model.box != config.box:
        raise ValueError(f"model box {model.box} != config box {config.box}")
    rngs = _streams(config.seed)
    acq = _true_acquisition(config, model, rngs)
    sigma0 = _calibrate_sigma0(model, acq, config)
    stack, image_index = _render_all(model, acq, config, sigma0, rngs["noise"], progress,
                                     stack_file)
    particles = _particles(acq, config, stack, image_index, rngs)
    truth = truth_table(acq, model, particles)
    return SimulatedDataset(particles=particles, truth=truth,
                            state_volumes=model.state_volumes(), model=model, config=config,
                            acquisition=acq, sigma0=sigma0)
