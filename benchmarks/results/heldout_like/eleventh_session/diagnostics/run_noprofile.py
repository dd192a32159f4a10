"""`tomohet` with the subtomograms' noise profile switched off (white noise per shell, as
before the eleventh session). usage: run_noprofile.py TOMOHET_ARGS..."""
import sys

import tomohet.methods.noise_profile as npf
from tomohet.cli.main import main

npf.MIN_SPREAD = float("inf")
sys.exit(main(sys.argv[1:]))
