import sys, time, numpy as np, torch
sys.path.insert(0, "/work/main/tests")
from synthetic import blob_volume, complex_points, make_tilt_set
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from tomohet.methods.vae import TiltVAEMethod
torch.set_num_threads(1)
BOX=24; CAP=(8.0,1.0,-1.0)
base = complex_points()
vols = torch.stack([blob_volume(BOX, base), blob_volume(BOX, base + [CAP])])
labels = np.arange(120) % 2
p, lab, _ = make_tilt_set(n=120, box=BOX, n_tilts=15, snr=0.3, seed=5, volumes=vols, labels=labels)
kw = dict(zdim=4, n_epochs=10, n_tilts=10, progress=False)
for extra in [eval(a) for a in sys.argv[1:]] or [{}]:
    t=time.time(); m = TiltVAEMethod(**{**kw, **extra}).fit(p); z=m.transform()
    ari = adjusted_rand_score(lab, KMeans(2, n_init=4, random_state=0).fit_predict(z))
    print(extra, "ARI %.3f"%ari, "%.0fs"%(time.time()-t), flush=True)
