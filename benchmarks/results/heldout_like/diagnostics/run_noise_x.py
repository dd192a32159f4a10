import os, sys
import tomohet.physics.forward as fw
C = float(os.environ.get("C", "1"))
_orig = fw.NoiseModel.update
def update(self, *a, **k):
    _orig(self, *a, **k)
    if self.ndim == 3:
        self._sigma2 = self._sigma2 * C
fw.NoiseModel.update = update
from tomohet.cli.main import main
sys.exit(main(sys.argv[1:]))
