"""Benchmarking against simulated ground truth.

:mod:`~tomohet.bench.datasets` (data + truth), :mod:`~tomohet.bench.oracle` (the Bayes
ceiling), :mod:`~tomohet.bench.runner` (methods -> leaderboard), :mod:`~tomohet.bench.report`
and :mod:`~tomohet.bench.figures` (offline HTML), :mod:`~tomohet.bench.evaluate` (score
any tool's output). Submodules are imported on demand to keep ``import tomohet`` light.
"""
