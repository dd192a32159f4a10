"""tomohet: structural heterogeneity in situ from cryo-electron tomography."""

__version__ = "0.1.0"
