"""Held-out-like variants of the 5% / 3% ladder cell: other component sites, other
populations, more missing tilts, other seeds. Writes one SimulationConfig JSON per cell."""
import json
import sys
from pathlib import Path

from tomohet.sim.presets import get_preset

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
VARIANTS = {
    # A and B at other sites of the ribosome's surface, equal populations
    "g1": dict(A=[0.2, 1.0, -0.3], B=[0.3, -0.6, 1.0], pops=[0.25, 0.25, 0.25, 0.25],
               seed=11, defocus=[3.0, 5.0]),
    # other sites again, unequal populations, lower defocus
    "g2": dict(A=[-0.5, 0.4, -1.0], B=[1.0, -0.8, -0.2], pops=[0.4, 0.2, 0.25, 0.15],
               seed=12, defocus=[2.0, 4.0]),
}
for vname, v in VARIANTS.items():
    for snr, n in ((0.3, 300), (0.05, 300), (0.05, 500)):
        d = get_preset(f"ladder-m05-snr{snr:g}-n{n}").to_dict()
        d["name"] = f"{vname}-m05-snr{snr:g}-n{n}"
        s = d["structure"]
        s["components"]["A"]["direction"] = v["A"]
        s["components"]["B"]["direction"] = v["B"]
        for st, p in zip(s["states"], v["pops"], strict=True):
            st["fraction"] = p
        d["missing_tilt_rate"] = 0.10
        d["defocus_range_um"] = v["defocus"]
        d["seed"] = v["seed"]
        (out / f"{d['name']}.json").write_text(json.dumps(d, indent=1))
        print(d["name"])
