"""Issue 17, 100k run: the work of ``bench_parallel.py memory DATA --what vae``
(TiltVAEMethod(n_epochs=1, zdim=8, n_tilts=10, random_state=0).fit) with a thread that
logs, every 5 s, RSS (/proc/self/status) and the innermost tomohet functions the main
thread is in, to LOG.jsonl; run under ``timeout`` for a partial, labelled record.

    python drive_vae.py DATA.star LOG.jsonl
"""

import json
import sys
import threading
import time
import traceback

import torch

from tomohet.io import read_particles
from tomohet.methods.vae import TiltVAEMethod

FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
T0 = time.perf_counter()
MAIN = threading.get_ident()


def status_MB() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in FIELDS:
                out[key + "_MB"] = round(int(line.split()[1]) / 1024)
    return out


def where() -> list[str]:
    frame = sys._current_frames().get(MAIN)
    if frame is None:
        return []
    stack = traceback.extract_stack(frame)
    return [f"{fr.filename.split('tomohet/')[-1]}:{fr.name}" for fr in stack
            if "tomohet/" in fr.filename][-4:]


def sample(log) -> None:
    while True:
        row = {"t_s": round(time.perf_counter() - T0, 1),
               "utc": time.strftime("%H:%M:%S", time.gmtime())}
        log.write(json.dumps({**row, **status_MB(), "in": where()}) + "\n")
        time.sleep(5)


def main() -> None:
    log = open(sys.argv[2], "a", buffering=1)  # noqa: SIM115
    threading.Thread(target=sample, args=(log,), daemon=True).start()
    torch.set_num_threads(1)
    p = read_particles(sys.argv[1])
    log.write(json.dumps({"phase": "read", "n": p.n_particles, **status_MB()}) + "\n")
    TiltVAEMethod(n_epochs=1, zdim=8, n_tilts=10, progress=True, random_state=0).fit(p)
    t = round(time.perf_counter() - T0, 1)
    log.write(json.dumps({"phase": "fit_done", "t_s": t, **status_MB()}) + "\n")


if __name__ == "__main__":
    main()
