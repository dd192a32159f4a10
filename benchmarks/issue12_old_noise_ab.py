"""Issue 12 A/B: ``tomohet`` with the noise model's pre-fix behaviour, the code otherwise
as checked out, printing each E/M pass's current size and log evidence.

Before the fix each pass accumulated its noise into a fresh ``NoiseModel`` (placeholder
sigma2 = 1) and ``update(fill="keep")`` kept the placeholder in shells the pass left out.
``--new`` leaves the fixed behaviour in place (trace only). Arguments after that are
``tomohet``'s, e.g.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/issue12_old_noise_ab.py bench \
        --ladder --methods ml2d --ladder-mass 0.05 --ladder-snr 0.05 --ladder-n 300 \
        --out benchmarks/results/ladder_ml2d_box48_oldnoise_m05
"""

import sys

from tomohet.cli.main import main
from tomohet.methods.em import EMEngine
from tomohet.physics.forward import NoiseModel

orig_update = NoiseModel.update
orig_pass = EMEngine.em_pass


def update(self, floor=1e-8, fill="keep"):
    if fill == "keep":
        self._estimated[:] = True  # old: every shell "kept", placeholders included
    return orig_update(self, floor, fill)


def em_pass(self, state, halves, max_top=None):
    out = orig_pass(self, state, halves, max_top)
    print(f"[trace] iter {state.iteration + 1} shell {self.current_shell(state.fsc)} "
          f"ll {out[3]:.4g}", flush=True)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--new":
        args = args[1:]
    else:
        NoiseModel.update = update
        NoiseModel.initialise_from = lambda self, other: None  # old: fresh model per pass
    EMEngine.em_pass = em_pass
    sys.exit(main(args))
