"""Benchmark metrics: arrays or tensors in, floats out; pure functions.

Discrete: :func:`ari`, :func:`nmi`, :func:`hungarian_accuracy`, :func:`confusion_matrix`,
:func:`population_error`. Maps: :func:`per_particle_fsc`, :func:`half_map_resolution`.
Latent spaces: :func:`neighbourhood_similarity`, :func:`rank_correlation`.
"""

from tomohet.metrics.clustering import (
    PopulationError,
    ari,
    check_labels,
    confusion_matrix,
    hungarian_accuracy,
    hungarian_mapping,
    nmi,
    population_error,
)
from tomohet.metrics.latent import neighbourhood_similarity, rank_correlation, truth_embedding
from tomohet.metrics.volumes import ParticleFSC, half_map_resolution, per_particle_fsc

__all__ = [
    "ari", "nmi", "hungarian_accuracy", "hungarian_mapping", "confusion_matrix",
    "population_error", "PopulationError", "check_labels", "per_particle_fsc", "ParticleFSC",
    "half_map_resolution", "neighbourhood_similarity", "rank_correlation", "truth_embedding",
]
