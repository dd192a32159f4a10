"""Linear heterogeneity methods: wmdpca, ccmatrix, multiscale and ppca2d.

Importing this package registers them (see :func:`tomohet.methods.load_all`).
"""

from tomohet.methods.linear.ccmatrix import CCMatrix
from tomohet.methods.linear.common import LinearMethod
from tomohet.methods.linear.ppca2d import PPCA2D
from tomohet.methods.linear.wmdpca import WMDPCA, MultiScale

__all__ = ["LinearMethod", "WMDPCA", "MultiScale", "CCMatrix", "PPCA2D"]
