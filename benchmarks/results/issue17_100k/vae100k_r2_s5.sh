#!/bin/bash
cd /work/big100k_run
rm -rf vae vae.out vae.err vae_tree_rss.log
echo "vae start $(date -u) commit $(git -C /work/main rev-parse --short HEAD)" >> chain.log
OMP_NUM_THREADS=1 /usr/bin/time -v /work/main/.venv/bin/tomohet --threads 1 --ranks 2 train vae /work/big100k/particles_optimisation_set.star --zdim 8 --epochs 1 --n-tilts 10 --seed 0 --out /work/big100k_run/vae > vae.out 2> vae.err &
pid=$!
bash /work/big100k_run/sample_tree.sh $pid /work/big100k_run/vae_tree_rss.log &
wait $pid
echo vaedone $(date -u) >> chain.log
