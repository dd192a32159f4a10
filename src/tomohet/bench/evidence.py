"""Re-export of :mod:`tomohet.methods.evidence` (its home since every discrete run's
outputs report the evidence; kept here for the bench report and older imports)."""

from tomohet.methods.evidence import (
    ClassEvidence,
    class_evidence,
    difference_z,
    fsc_noise_threshold,
)

__all__ = ["ClassEvidence", "class_evidence", "difference_z", "fsc_noise_threshold"]
