import sys
exec(open('res.py').read().split("for name, msk in masks.items():")[0].replace('TF = [tuple', 'TF0 = [tuple').replace('sys.argv[5]', '"1:none"'))
import numpy as np
from tomohet.physics.fsc import resolution_at
for name in sys.argv[4].split(","):
    msk = masks[name]; full = upsample_mask(msk, box); comp = A if "A" in name else B
    st = fit_half(np.arange(nn), full, comp.copy())
    print(name, "ARI", round(ari(comp, st.posteriors.argmax(1)), 3), "res", st.resolution_A)
    for c in st.fsc: print("  fsc", np.round(np.asarray(c), 2).tolist())
    eng = EMEngine(plain.particles, dataclasses.replace(cfg, n_classes=2), plain.index, plain.reference_mask, full, cons, subtract_all=True)
    print("  current shell", eng.current_shell(st.fsc), "of", box // 2, "shell 40A =", round(box * plain.px / 40, 1))
    for h in st.history[-3:]: print("  hist", {k: v for k, v in h.items() if k not in ("fsc",)})
    np.savez(f"fsc_{name}.npz", vols=st.volumes.numpy(), fsc=np.asarray(st.fsc))
