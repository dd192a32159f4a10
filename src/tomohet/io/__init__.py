"""Particle files in and out: RELION 5, Warp/tomoDRGN per-tilt, RELION 3.1/4, STOPGAP, Dynamo.

Public API:

* :func:`read_particles` / :func:`write_particles`: any supported flavour,
* :func:`read_mrc` / :func:`write_mrc`: MRC volumes, images and stacks,
* :func:`load_volume`: a volume parameter (MRC path or array) as a tensor,
* :func:`write_assignments_csv` / :func:`write_latent_csv`: method outputs,
* :func:`detect_format`: the flavour of a file,
* :mod:`tomohet.io.atomic`: atomic file writes.
"""

from tomohet.data.sources import DataError
from tomohet.io.atomic import atomic_path, atomic_write_text
from tomohet.io.detect import FORMATS, detect_format
from tomohet.io.mrc import load_volume, mrc_info, read_mrc, write_mrc
from tomohet.io.readers import read_particles
from tomohet.io.writers import write_assignments_csv, write_latent_csv, write_particles

__all__ = [
    "read_particles", "write_particles", "read_mrc", "write_mrc", "mrc_info", "load_volume",
    "write_assignments_csv", "write_latent_csv", "detect_format", "FORMATS", "DataError",
    "atomic_path", "atomic_write_text",
]
