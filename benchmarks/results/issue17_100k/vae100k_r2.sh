#!/bin/bash
cd /work/big100k_run
OMP_NUM_THREADS=1 nice -n 15 /usr/bin/time -v /work/main/.venv/bin/tomohet --threads 1 --ranks 2 train vae /work/big100k/particles_optimisation_set.star --zdim 8 --epochs 1 --n-tilts 10 --seed 0 --out /work/big100k_run/vae > vae.out 2> vae.err &
pid=$!
bash /work/main/benchmarks/results/issue17_100k/sample.sh $pid /work/big100k_run/vae_rss.log &
wait $pid
echo done $(date -u) >> vae.out
