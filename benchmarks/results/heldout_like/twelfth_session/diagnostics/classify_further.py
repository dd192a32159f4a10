"""`tomohet classify ...` with discovery's further candidates over scales (the experiment
flag of the twelfth session). usage: classify_further.py CLASSIFY-ARGS..."""
import sys

import tomohet.methods.discovery as D
from tomohet.cli.main import main

# D.FURTHER_OVER_SCALES = True: the experiment flag of 3a55cb8..060c945, the default since
sys.exit(main(sys.argv[1:]))
