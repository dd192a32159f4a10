"""Must-show of ``tomohet ensemble`` (issue 15): on a two-component preset, volumes
sampled from a continuous method's latent space (wmdpca's per-particle volumes) give
both components as separate regions, and per-particle occupancies whose presence
pattern (A?, B?) matches the true states (ARI).

    .venv/bin/python benchmarks/ensemble_two_components.py [PRESET] [BOX] [SNR_REFERENCE]

(the ladder presets measure SNR on the projection, ~40x harder than the ``-easy``
presets' SNR 0.1 on the recorded image; SNR_REFERENCE ``image`` uses the latter).

Prints one JSON line: regions found, their overlap with the true component masks, ARI.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score


def main(preset: str = "ladder-m10-snr0.1-n300", box: int = 32,
         snr_reference: str | None = None) -> dict:
    from tomohet.analysis.ensemble import ensemble_regions
    from tomohet.methods import get_method
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    t0 = time.perf_counter()
    extra = {"snr_reference": snr_reference} if snr_reference else {}
    sim = simulate(get_preset(preset, box=box, **extra), seed=0)
    p = sim.particles
    m = get_method("wmdpca", n_components=4, cluster=None, progress=False,
                   random_state=0).fit(p)
    vols = m.particle_volumes(np.arange(p.n_particles)).numpy()
    res = ensemble_regions(vols)
    states = sim.truth["state"].to_numpy()
    out = {"preset": preset, "box": box, "snr_reference": sim.config.snr_reference,
           "n": p.n_particles, "regions": res.n_regions,
           "region_voxels": res.sizes.tolist(), "threshold": res.threshold}
    masks = sim.model.component_masks.numpy() > 0.5  # (2, D, D, D): A, B
    overlap = []
    for j in range(res.n_regions):
        r = res.labels == j + 1
        overlap.append({c: round(float((r & masks[i]).sum() / max(r.sum(), 1)), 3)
                        for i, c in enumerate(sim.model.component_names)})
    out["region_overlap"] = overlap
    # each true component's best region (by overlap); presence pattern -> states
    best = {c: int(np.argmax([o[c] for o in overlap])) if overlap else -1
            for c in sim.model.component_names}
    out["component_region"] = {c: b + 1 for c, b in best.items()}
    if res.n_regions >= 2 and len(set(best.values())) == 2:
        pres = res.present()
        pred = 2 * pres[:, best["A"]] + pres[:, best["B"]]
        out["ari"] = round(float(adjusted_rand_score(states, pred)), 4)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(args[0] if args else "ladder-m10-snr0.1-n300",
                          int(args[1]) if len(args) > 1 else 32,
                          args[2] if len(args) > 2 else None)))
