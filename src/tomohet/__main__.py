"""``python -m tomohet`` (and ``torchrun --nproc-per-node N -m tomohet ...``)."""

import sys

from tomohet.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
