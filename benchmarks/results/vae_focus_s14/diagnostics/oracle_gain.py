"""Per-particle NLL gain (nats) of the true state's map over the VAE's consensus, on the
samples the VAE trains on (all cached tilts; x 10/41 for the 10-tilt draw)."""
import os, sys, numpy as np, torch
torch.set_num_threads(1)
from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.vae import TiltVAEMethod
from tomohet.methods.vae.stream import stream_samples
from tomohet.methods.vae.reference import iterate_all
from tomohet.physics.projection import VolumeProjector
from tomohet.data.keys import half_sets
mass, snr, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
ov = {"box": int(os.environ["BOX"])} if os.environ.get("BOX") else {}
ds = simulate_cell(LadderCell(mass, snr, n), 0, ov)
p = ds.particles; st = ds.truth["state"].to_numpy()
m = TiltVAEMethod(zdim=4, progress=False, random_state=0)
dev = torch.device("cpu")
kept, slots = m._select(p); m.kept_ = kept
m.ident_ = (list(p.names), list(p.tomo_names)); m.halves_ = half_sets(*m.ident_, seed=0, table=p.table)
cache = stream_samples(p, kept, slots, None, device=dev)
model, *_ = m._start(cache, p, dev)
ms = model.config.get("train_max_shell"); print("train_max_shell", ms, "noise", float(model.noise[1]))
if ms is not None: cache = cache.restrict(float(ms))
V = ds.state_volumes.float()
w = np.bincount(st, minlength=len(V)) / len(st)
dV = V - torch.einsum("k,kzyx->zyx", torch.as_tensor(w).float(), V)
projs = [VolumeProjector(model.consensus + d) for d in dV]
projs_raw = [VolumeProjector(v) for v in V]
gain, gain_raw = np.zeros(n), np.zeros(n)
for rows, pb in iterate_all(cache, 64):
    s2 = model.noise[pb.shell.clamp_max(model.noise.shape[0] - 1)]
    wt = 0.5 * pb.herm * pb.weight() / s2
    r0 = pb.data - pb.transfer * model.consensus_at(pb.freq)
    e0 = (r0.abs() ** 2 * wt)
    lab = torch.as_tensor(st[rows.numpy()])[pb.particle]
    for out, P in ((gain, projs), (gain_raw, projs_raw)):
        e1 = torch.zeros_like(e0)
        for k, pr in enumerate(P):
            sel = lab == k
            if sel.any():
                r1 = pb.data[sel] - pb.transfer[sel] * pr.sample(pb.freq[sel])[0]
                e1[sel] = r1.abs() ** 2 * wt[sel]
        g = torch.zeros(len(rows)).index_add_(0, pb.particle, (e0 - e1).float())
        out[rows.numpy()] = g.numpy()
print("gain consensus+true difference: mean %.2f median %.2f nats (x10/41: %.2f)" % (gain.mean(), np.median(gain), gain.mean() * 10 / 41))
print("gain true map itself: mean %.2f" % gain_raw.mean())
print("tilts per particle", float(cache.visible.sum(1).float().mean()))
