"""Analysis of method outputs: latent PCA/UMAP, maps along trajectories, VAE volumes, pages.

Clustering of latent coordinates and volume series along components are used inside the
linear methods and so live in the methods layer (:mod:`tomohet.methods.clustering`,
:mod:`tomohet.methods.trajectories`); they are re-exported here.
"""

from tomohet.methods.clustering import ClusterResult, cluster_latent, suggest_k
from tomohet.methods.trajectories import component_series, write_component_series

__all__ = ["ClusterResult", "cluster_latent", "suggest_k", "component_series",
           "write_component_series"]
