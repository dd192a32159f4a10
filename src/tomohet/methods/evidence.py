"""Where do the classes of a discrete run differ, and is the difference above noise?

From the half-set maps of K classes (``half_volumes_``, (K, 2, D, D, D): each class
reconstructed separately from the two half sets), for each pair of classes ``(a, b)``:

* the half-set difference maps ``d1 = h[a, 0] - h[b, 0]`` and ``d2 = h[a, 1] - h[b, 1]``
  carry the same true difference but independent noise, so their Fourier shell
  correlation (the *difference FSC*) is ~0 when the classes are equal and positive where
  they truly differ;
* the difference is called above noise when the correlation of d1 and d2 over every
  Fourier component past the origin, ``C = sum_k Re(F1 F2*)``, exceeds ``sigma`` times its
  standard deviation under independent noise, ``sqrt(sum_k |F1|^2 |F2|^2)`` (exact for
  independent Gaussian noise of any spectrum, so coloured and masked noise are covered):
  the score ``z = C / sqrt(sum_k |F1|^2 |F2|^2)`` is ~N(0, 1) for equal classes. The
  per-shell curves are shown against the ``sigma / sqrt(n / 2)`` noise curve (van Heel &
  Schatz 2005), which is too strict for the few low-resolution shells where small
  components differ, so it does not decide;
* *where*: the mean difference ``(d1 + d2) / 2`` weighted by the local correlation of d1
  and d2 (Gaussian windows of ``smooth_px``), clipped at 0: large only where both halves
  show the same difference.

A run whose pairs are all within noise found no heterogeneity above noise. The converse
does not hold: half maps are independent only as far as the classification that made them
is, and a classification that sorts particles by their noise against shared references
(or by orientation, defocus, ...) makes differences that both halves repeat. Measured on
one-state data (the demo complex alone, 160 particles, box 24, K = 2): z = 3.2 for ml2d
and 9.2 for shc; the same with two true states: 13.6 and 10.6. So ``z <= 3`` says "no
heterogeneity found above noise" plainly, while ``z > 3`` says only that the class
difference reproduces between the half sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from tomohet.physics.fourier import hermitian_weights_3d, radial_shell_index
from tomohet.physics.fsc import fsc

__all__ = ["ClassEvidence", "class_evidence", "difference_z", "fsc_noise_threshold",
           "focus_fsc", "run_summary", "NO_HETEROGENEITY"]


@dataclass
class ClassEvidence:
    """Evidence for K classes: P = K (K - 1) / 2 pairs.

    pairs [(a, b)]; curves (P, D//2+1) difference FSC; threshold (D//2+1,) noise curve;
    z (P,) correlation score of the half-set differences; significant (P,) ``z > sigma``;
    where (P, D, D, D) consistent difference weighted by local correlation (>= 0).
    """

    pairs: list[tuple[int, int]]
    curves: np.ndarray
    threshold: np.ndarray
    z: np.ndarray
    significant: np.ndarray
    where: np.ndarray

    @property
    def any_significant(self) -> bool:
        return bool(self.significant.any())

    def summary(self) -> str:
        """One plain sentence for the report."""
        if not self.any_significant:
            return ("No heterogeneity found above noise: for every pair of classes the "
                    "class difference seen in one half set is uncorrelated with the one "
                    f"seen in the other (largest z = {float(self.z.max()):.1f}).")
        above = [f"classes {a + 1}-{b + 1} (z = {z:.1f})" for (a, b), z, s
                 in zip(self.pairs, self.z, self.significant, strict=True) if s]
        return (f"Class differences reproduce between the half sets for {len(above)} of "
                f"{len(self.pairs)} pairs ({', '.join(above)}); the maps show where. A "
                "reproducible difference is necessary, not sufficient: classifying "
                "one-state data can make one too.")


def fsc_noise_threshold(box: int, sigma: float = 3.0, mask_fraction: float = 1.0
                        ) -> np.ndarray:
    """``sigma / sqrt(n_eff / 2)`` per shell 0..D//2: the FSC that uncorrelated noise
    exceeds with probability ~ that of a ``sigma`` normal deviate. ``n_eff`` is the number
    of Fourier voxels in the shell (full transform) times ``mask_fraction``."""
    shell = radial_shell_index(box, 3)
    n = torch.zeros(box // 2 + 1, dtype=torch.float64)
    keep = shell <= box // 2
    n.index_add_(0, shell[keep], hermitian_weights_3d(box)[keep].double())
    n_eff = (n * float(mask_fraction)).clamp_min(2.0).numpy()
    return sigma / np.sqrt(n_eff / 2.0)


def difference_z(d1: torch.Tensor, d2: torch.Tensor) -> np.ndarray:
    """``sum_k Re(F1 F2*) / sqrt(sum_k |F1|^2 |F2|^2)`` over all Fourier components except
    the origin: (P, D, D, D) x2 -> (P,). ~N(0, 1) when d1 and d2 are independent noise."""
    f1 = torch.fft.fftn(d1.double(), dim=(-3, -2, -1)).flatten(1)[:, 1:]
    f2 = torch.fft.fftn(d2.double(), dim=(-3, -2, -1)).flatten(1)[:, 1:]
    num = (f1 * f2.conj()).real.sum(1)
    den = torch.sqrt((f1.abs() ** 2 * f2.abs() ** 2).sum(1)).clamp_min(1e-300)
    return (num / den).numpy()


def _local_correlation(d1: np.ndarray, d2: np.ndarray, smooth_px: float) -> np.ndarray:
    def g(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, smooth_px, mode="constant")

    cov, den = g(d1 * d2), np.sqrt(g(d1 * d1) * g(d2 * d2))
    ok = den > 1e-12 * max(float(den.max()), 1e-300)
    return np.where(ok, cov / np.where(ok, den, 1.0), 0.0)


def class_evidence(half_volumes: torch.Tensor | np.ndarray, mask: torch.Tensor | None = None,
                   sigma: float = 3.0, smooth_px: float = 1.5) -> ClassEvidence:
    """Difference FSCs and where-maps of every pair of classes (see module doc).

    half_volumes (K, 2, D, D, D); mask (D, D, D) in [0, 1] applied to the difference maps
    (default none). -> :class:`ClassEvidence`.
    """
    h = torch.as_tensor(half_volumes, dtype=torch.float32)
    if h.ndim != 5 or h.shape[1] != 2:
        raise ValueError(f"half_volumes must be (K, 2, D, D, D), got {tuple(h.shape)}")
    k, box = h.shape[0], h.shape[-1]
    m = torch.ones((box,) * 3) if mask is None else torch.as_tensor(mask, dtype=torch.float32)
    pairs = list(combinations(range(k), 2))
    threshold = fsc_noise_threshold(box, sigma, float((m**2).mean()))
    if not pairs:
        empty = np.zeros((0, box // 2 + 1))
        return ClassEvidence([], empty, threshold, np.zeros(0), np.zeros(0, bool),
                             np.zeros((0, box, box, box)))
    a = torch.as_tensor([p[0] for p in pairs])
    b = torch.as_tensor([p[1] for p in pairs])
    d1, d2 = (h[a, 0] - h[b, 0]) * m, (h[a, 1] - h[b, 1]) * m
    curves = fsc(d1, d2).double().numpy()
    z = difference_z(d1, d2)
    where = np.stack([
        np.abs(0.5 * (x + y)) * np.clip(_local_correlation(x, y, smooth_px), 0.0, 1.0)
        for x, y in zip(d1.double().numpy(), d2.double().numpy(), strict=True)])
    return ClassEvidence(pairs, curves, threshold, z, z > sigma, where)


NO_HETEROGENEITY = "no heterogeneity found above noise"


def focus_fsc(half_volumes: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Per-class half-map FSC inside a soft mask (the focus region): the resolution
    where the classes differ. (K, 2, D, D, D), (D, D, D) -> (K, D//2+1)."""
    h = torch.as_tensor(half_volumes, dtype=torch.float32)
    m = torch.as_tensor(mask, dtype=torch.float32)
    return fsc(h[:, 0] * m, h[:, 1] * m).double().numpy()


def run_summary(discovery: Any, half_volumes: torch.Tensor | None, pixel_size_A: float,
                sigma: float = 3.0, mask: torch.Tensor | None = None,
                classes: list[int] | None = None
                ) -> tuple[dict[str, Any], ClassEvidence | None]:
    """The plain verdict of a discrete run (for ``summary.json`` and the CLI).

    "no heterogeneity found above noise" when discovery (a
    :class:`~tomohet.methods.discovery.Discovery` or None) found no region whose
    residuals vary above noise, or when every pair of classes is equal within noise by
    the half-set test (:func:`class_evidence`). The converse is weaker: a reproducible
    difference can come from classifying one-state data (see the module doc), so the
    statement then says only that the classes differ reproducibly. ``mask``: the focus
    mask the classes were made in; the half-set test runs inside it (over the whole box
    a 5% component's difference is lost in the noise of the rest: z 2.7 there, 9.5 inside
    the mask on the test set of ``tests/test_small_states.py``). ``classes``: the class
    numbers (0-based) of the rows of ``half_volumes`` when empty classes were left out
    (pairs are reported with those numbers).
    -> (summary dict, evidence or None when there are no half maps / one class).
    """
    ev = None
    k = 0 if half_volumes is None else half_volumes.shape[0]
    if half_volumes is not None and k >= 2:
        ev = class_evidence(half_volumes, mask=mask, sigma=sigma)
    out: dict[str, Any] = {"discovery": None if discovery is None else discovery.summary(),
                           "half_set_test": "inside the focus mask" if mask is not None
                           else "whole box"}
    if ev is not None:
        num = list(range(k)) if classes is None else list(classes)
        out["pairs"] = [{"classes": [num[a] + 1, num[b] + 1], "z": round(float(z), 2),
                         "above_noise": bool(s)}
                        for (a, b), z, s in zip(ev.pairs, ev.z, ev.significant, strict=True)]
    nothing_found = discovery is not None and discovery.region == "none"
    equal = ev is not None and not ev.any_significant
    out["heterogeneity_found"] = not (nothing_found or equal)
    if nothing_found:
        out["statement"] = (
            f"{NO_HETEROGENEITY[0].upper()}{NO_HETEROGENEITY[1:]}: the residuals against "
            "the consensus vary nowhere more than noise (largest excess-variance z = "
            f"{discovery.max_z:.1f}, threshold "
            f"{getattr(discovery, 'threshold', 4.0):.1f}).")
    elif equal:
        assert ev is not None
        out["statement"] = ev.summary()
    else:
        where = ("" if discovery is None else
                 {"local": " Discovery found a local variable region (focus_mask.mrc).",
                  "large": " Discovery found a large variable region (whole subunits)."}
                 .get(discovery.region, ""))
        held = [t for t in getattr(discovery, "region_tests", []) if t.get("accepted")]
        if held and not getattr(discovery, "regions", None):
            where = (" The variance test found nothing above its threshold (largest z = "
                     f"{discovery.max_z:.1f}, threshold {discovery.threshold:.1f}); the "
                     "held-out likelihood test found a candidate region real (z = "
                     f"{held[0]['z']:.1f}; focus_mask.mrc).")
        out["statement"] = ("Heterogeneity found." + where
                            + ("" if ev is None else " " + ev.summary()))
    return out, ev
