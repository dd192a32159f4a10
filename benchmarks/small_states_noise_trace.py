"""Issue 12: per-pass trace of the focused EM's noise model on a low-SNR ladder cell.

Runs ml2d's focused EM from the true labels with the true focus mask (as
``small_states_lowsnr.py``'s ``true-mask/true-labels`` variant) on
``ladder-m05-snr0.05-n300`` and prints, before each E/M pass, the pass's current size
(highest shell) and the min / max over tilt groups of the incoming noise power per shell,
then the log evidence and the populations; finally the ARI trace and the history.
The traces before and after the fix are in ``results/small_states/issue12_noise_trace_*.log``.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/small_states_noise_trace.py 48 12
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from small_states_lowsnr import run_from, true_focus

from tomohet.bench.ladder import LadderCell, simulate_cell
from tomohet.methods.em import EMEngine
from tomohet.methods.ml import ML2D


def main() -> None:
    torch.set_num_threads(1)
    box = int(sys.argv[1]) if len(sys.argv) > 1 else 48
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    ds = simulate_cell(LadderCell(0.05, 0.05, 300), 0, {} if box == 48 else {"box": box})
    focus = true_focus(torch.as_tensor(ds.state_volumes).float())
    orig = EMEngine.em_pass

    def em_pass(self, state, halves, max_top=None):
        s2 = state.sigma2
        print(f"iter {state.iteration + 1}: pass_shell={self.current_shell(state.fsc)}")
        print(f"   sigma2 min/shell={s2.min(0).values.numpy().round(4).tolist()}")
        print(f"   sigma2 max/shell={s2.max(0).values.numpy().round(4).tolist()}", flush=True)
        out = orig(self, state, halves, max_top)
        print(f"   ll={out[3]:.4g} pops={np.round(out[2].mean(0), 3).tolist()}", flush=True)
        return out

    EMEngine.em_pass = em_pass  # type: ignore[method-assign]
    m = ML2D(n_classes=ds.n_states, n_iter=iters, random_state=0, progress=False)
    m, _ = run_from(m, ds.particles, focus, ds.states, iters)
    print("ari trace", m.trace_)
    for h in m.history_:
        print(h["iteration"], h["log_likelihood"], np.round(h["resolution_A"], 1).tolist(),
              round(h["changed_fraction"], 3))


if __name__ == "__main__":
    main()
