"""Is the focused EM's log posterior ratio calibrated? (reads resA.py's saved posteriors
and oracle_marg.py's truth; /work/diag/s8 paths as they were run)"""
import numpy as np
from sklearn.mixture import GaussianMixture
d = np.load('/work/diag/s8/oracle_0.05_0.05_500.npz'); s = d['s']; A = np.isin(s, [0, 1]).astype(int)
for f in ['base', 'dw0', 'tf3', 'cs0']:
    p = np.clip(np.load(f'/work/diag/s8/post_A_{f}_500.npy'), 1e-300, 1)
    l = np.log(p[:, 1]) - np.log(p[:, 0]); lab = (l > 0).astype(int)
    if (lab == A).mean() < 0.5:
        l, lab = -l, 1 - lab
    g = GaussianMixture(2, covariance_type='tied', random_state=0, n_init=5).fit(l[:, None])
    hi = np.argmax(g.means_[:, 0]); lab2 = (g.predict_proba(l[:, None])[:, hi] > 0.5).astype(int)
    print(f, 'acc', (lab == A).mean(), 'recalibrated (1D GMM) acc', (lab2 == A).mean())
    print('   true present LLR mean/sd', l[A == 1].mean().round(2), l[A == 1].std().round(2),
          'absent', l[A == 0].mean().round(2), l[A == 0].std().round(2))
