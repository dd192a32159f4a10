"""ARI of a `tomohet classify` output against a simulation's truth, with the crosstab.
usage: score.py SIM_DIR CLASSIFY_OUT"""
import json
import sys

import pandas as pd
from sklearn.metrics import adjusted_rand_score

sim, out = sys.argv[1], sys.argv[2]
a = pd.read_csv(f"{out}/assignments.csv")
t = pd.read_csv(f"{sim}/truth.csv")
m = t.merge(a, left_on="name", right_on="particle")
assert len(m) == len(t) == len(a)
print(f"ARI {adjusted_rand_score(m['state'], m['class']):.3f}")
print(pd.crosstab(m["state_name"], m["class"]))
s = json.load(open(f"{out}/summary.json"))
d = s["discovery"]
print({k: d[k] for k in ("region", "max_z", "threshold", "n_regions")})
for c in d["candidate_tests"]:
    print(c)
print(s.get("statement"))
