"""`tomohet` with the held-out candidates' family-wise level set to ALPHA (default of
region_posteriors: 0.01). usage: ALPHA=0.05 run_alpha.py TOMOHET_ARGS..."""
import os
import sys

import tomohet.methods.factorial as fac
from tomohet.cli.main import main

_orig = fac.region_posteriors


def region_posteriors(*a, **k):
    k["alpha"] = float(os.environ.get("ALPHA", "0.01"))
    return _orig(*a, **k)


fac.region_posteriors = region_posteriors
import tomohet.methods.shc_regions as shr  # noqa: E402

if hasattr(shr, "region_posteriors"):
    shr.region_posteriors = region_posteriors
sys.exit(main(sys.argv[1:]))
