"""Tilt-series VAE for continuous heterogeneity: ``vae`` (tomoDRGN mode) and ``vae-et``
(cryoDRGN-ET mode). Importing this package registers both methods."""

from tomohet.methods.vae.method import TiltVAEETMethod, TiltVAEMethod

__all__ = ["TiltVAEMethod", "TiltVAEETMethod"]
