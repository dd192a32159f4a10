"""Normal-mode flexible fitting (HEMNMA-3D / MDTOMO style): ``nma``.

Importing this package registers it (see :func:`tomohet.methods.load_all`).
"""

from tomohet.methods.nma.method import NMA

__all__ = ["NMA"]
