"""The simulation configuration: one JSON-serialisable dataclass."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tomohet.sim.acquisition import TiltScheme

__all__ = ["SimulationConfig"]


@dataclass
class SimulationConfig:
    """Everything a simulation needs besides the seed.

    ``structure`` is the heterogeneity spec read by :func:`tomohet.sim.build.build_model`
    (``kind`` ``"maps"``, ``"atoms"`` or ``"points"``). ``snr`` is the SNR of tilt images
    at 0 degrees as defined in :func:`tomohet.sim.acquisition.sigma0_for_snr`; noise
    variance grows as 1/cos(tilt). ``snr_reference``: ``"image"`` -- the signal is the
    tilt image as recorded (CTF and exposure filter applied); ``"projection"`` -- the
    projected density before CTF and exposure filter (a common convention elsewhere; at
    3-5 um defocus the same number means ~40x more noise). ``min_distance_A`` None: the
    largest particle diameter of the states. ``pose_error_deg``: RMS angle of the random
    rotation applied to the orientation priors handed to methods; ``defocus_error_um``:
    standard deviation of the defocus error of each tilt image of each tomogram in the
    metadata (shared by the tomogram's particles). The truth keeps the exact values. ``ctf=False`` /
    ``dose_weighting=False`` leave the CTF / exposure filter out of the images (for
    tests); the metadata still carry defocus and dose.
    """

    name: str = "custom"
    n_particles: int = 200
    box: int = 32
    pixel_size_A: float = 10.0
    structure: dict[str, Any] = field(default_factory=dict)
    snr: float = 0.1
    snr_reference: str = "image"
    ctf: bool = True
    dose_weighting: bool = True
    tilt: TiltScheme = field(default_factory=TiltScheme)
    defocus_range_um: tuple[float, float] = (3.0, 5.0)
    astigmatism_um: float = 0.05
    defocus_tilt_sd_um: float = 0.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    n_tomograms: int = 4
    tomogram_size_A: tuple[float, float, float] = (4000.0, 4000.0, 1500.0)
    min_distance_A: float | None = None
    clustering: float = 0.0
    missing_tilt_rate: float = 0.0
    missing_per_tomogram: bool = False
    pose_error_deg: float = 0.0
    defocus_error_um: float = 0.0
    handedness: float = 1.0
    batch_size: int = 32
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("defocus_range_um", "tomogram_size_A"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulationConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown simulation settings: {', '.join(sorted(unknown))}")
        d = copy.deepcopy(dict(data))
        if isinstance(d.get("tilt"), dict):
            d["tilt"] = TiltScheme(**d["tilt"])
        for key in ("defocus_range_um", "tomogram_size_A"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def replace(self, **overrides: Any) -> SimulationConfig:
        """A copy with fields overridden; ``tilt_*`` keys go to the tilt scheme."""
        d = self.to_dict()
        for key, value in overrides.items():
            if key in d["tilt"] and key not in d:
                d["tilt"][key] = value
            else:
                d[key] = value
        return SimulationConfig.from_dict(d)
