"""Analysis of latent coordinates: clustering into classes, volumes along trajectories, etc."""

from tomohet.analysis.clustering import ClusterResult, cluster_latent, suggest_k
from tomohet.analysis.trajectories import component_series, write_component_series

__all__ = ["ClusterResult", "cluster_latent", "suggest_k", "component_series",
           "write_component_series"]
