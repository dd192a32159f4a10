#!/bin/bash
# issue 12 item 3, ppca2d: does the discovered focus (focus_mask="auto", the default) cost
# anything on whole-subunit states? discrete-easy (2,000 particles, box 48), default then
# the old unfocused ppca2d, one thread (eighth session; code 77f47be via a worktree). The
# second run (focus_mask=none) was stopped unfinished at the session's end: only ppca2d_auto/ is here
cd /work/main
O=benchmarks/results/linear_default_discrete_easy
OMP_NUM_THREADS=1 PYTHONPATH=/work/wt8/src .venv/bin/tomohet --threads 1 bench --preset discrete-easy --methods ppca2d \
  --no-report --out $O/ppca2d_auto > $O/ppca2d_auto.log 2>&1
OMP_NUM_THREADS=1 PYTHONPATH=/work/wt8/src .venv/bin/tomohet --threads 1 bench --preset discrete-easy --methods ppca2d \
  --param ppca2d.focus_mask=none --no-report --out $O/ppca2d_none > $O/ppca2d_none.log 2>&1
