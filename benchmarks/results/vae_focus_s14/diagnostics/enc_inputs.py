"""Do the vae encoder's inputs carry the state? PCA + k-means ARI, and CV logistic accuracy."""
import os, sys, numpy as np, torch
torch.set_num_threads(1)
from sklearn.decomposition import PCA
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.vae import TiltVAEMethod
from tomohet.methods.vae.stream import stream_samples
from tomohet.methods.vae.reference import iterate_all
from tomohet.methods.vae import train as T
from tomohet.data.keys import half_sets
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ov = {"box": int(os.environ["BOX"])} if os.environ.get("BOX") else {}
ds = simulate_cell(LadderCell(mass, snr, n), 0, ov)
p = ds.particles
truth = ds.truth["state"].to_numpy() if "state" in ds.truth else ds.truth.iloc[:, 1].to_numpy()
print(ds.truth.columns.tolist())
for focus in ["none", "auto"]:
    m = TiltVAEMethod(zdim=4, focus_mask=focus, progress=False, random_state=0, enc_radius=int(os.environ.get("R", 0)) or None)
    dev = torch.device("cpu")
    kept, slots = m._select(p); m.kept_ = kept
    m.ident_ = (list(p.names), list(p.tomo_names)); m.halves_ = half_sets(*m.ident_, seed=0, table=p.table)
    cache = stream_samples(p, kept, slots, None, device=dev)
    model, *_ = m._start(cache, p, dev)
    X = []
    use_v0 = True
    for rows, pb in iterate_all(cache, 64):
        r = pb.data - pb.transfer * model.consensus_at(pb.freq)
        X.append((model.encoder.inputs(pb, r) * model.encoder.scale).numpy())
    X = np.concatenate(X)
    for k in (4, 10, 30):
        z = PCA(k, random_state=0).fit_transform(X)
        ari = adjusted_rand_score(truth, KMeans(4, n_init=10, random_state=0).fit_predict(z))
        print(focus, "pca", k, "kmeans ARI %.3f" % ari, flush=True)
    acc = cross_val_score(LogisticRegression(C=0.1, max_iter=2000), X, truth, cv=5).mean()
    print(focus, "X", X.shape, "5-fold logistic acc %.3f" % acc, flush=True)
