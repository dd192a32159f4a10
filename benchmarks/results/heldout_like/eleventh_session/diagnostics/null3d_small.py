import sys; sys.path.insert(0, "tests")
import numpy as np, torch
from synthetic import make_tilt_set
from test_factorial import complex_points, blob_volume
from tomohet.methods import discovery, region_test
from tomohet.methods.ml import ML3D
torch.set_num_threads(1)
off = sys.argv[1] == "off"
snr = float(sys.argv[2]); seed = int(sys.argv[3])
if off:
    region_test.MIN_REGION_DISPERSION = float("inf")
discovery.region_from = lambda det: ("none", None, 0.0)
base = complex_points()
vol = blob_volume(24, base + [(8.0, 1.0, -1.0)])
particles, _, _ = make_tilt_set(n=int(sys.argv[4]), box=24, n_tilts=int(sys.argv[5]), snr=snr, seed=seed,
                                volumes=torch.stack([vol, vol]), labels=np.arange(int(sys.argv[4])) % 2)
m = ML3D(n_classes=2, n_iter=4, random_state=0, progress=False).fit(particles)
print(off, snr, seed, [(t["z"], t["accepted"], t.get("region_dispersion")) for t in m.discovery_.region_tests], m.discovery_.region)
