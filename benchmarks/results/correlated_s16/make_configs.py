"""Correlated components (sixteenth session): the ladder's 5% / 3% cell with A and B
mostly present together (populations A+B / A / B / core = 0.42 / 0.08 / 0.08 / 0.42,
phi 0.68), to see what discovery's start-agreement rule (regions.SAME_ARI) and
factorial's redundancy rule do when the components are not independent."""
import json
import sys
from pathlib import Path

from tomohet.sim.presets import get_preset

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for snr, n in ((0.3, 300), (0.1, 1000)):
    d = get_preset(f"ladder-m05-snr{snr:g}-n{n}").to_dict()
    d["name"] = f"corr-m05-snr{snr:g}-n{n}"
    for st, p in zip(d["structure"]["states"], [0.42, 0.08, 0.08, 0.42], strict=True):
        st["fraction"] = p
    (out / f"{d['name']}.json").write_text(json.dumps(d, indent=1))
    print(d["name"], [s["name"] for s in d["structure"]["states"]])
