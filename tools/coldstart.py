"""Cold-start cost of the Numba engine, measured in fresh processes.

For each scenario a new Python process imports fastseq and runs one forward + backward
through ``fastseq.layers`` (one layer, tiny shapes) and reports

* ``import``: ``import fastseq`` + ``get_backend(backend)`` (numba, scipy BLAS bridge),
* ``first``: the first forward + backward (JIT compile or cache load + run),
* ``second``: a second forward + backward in the same process (the steady state).

Scenarios: an empty Numba cache (``NUMBA_CACHE_DIR`` pointing at a fresh directory, so
everything compiles) and then the same directory again (warm cache: ``cache=True`` loads
the machine code instead of compiling it).

    python tools/coldstart.py                 # lstm float32
    python tools/coldstart.py --cells lstm gru rnn gru_classic --dtype float64
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import fastseq
from fastseq import layers
from fastseq.backends import get_backend
backend = get_backend(sys.argv[1])
t1 = time.perf_counter()
cells, dtype = sys.argv[2].split(","), np.dtype(sys.argv[3])

def run():
    for cell in cells:
        params = layers.init_params(cell, 3, 4, 1, False, random_state=0, dtype=dtype)
        x = np.ones((5, 2, 3), dtype)
        out, h_n, c_n, cache = layers.stack_forward(backend, cell, params, x)
        layers.stack_backward(params, cache, np.ones_like(out))

run()
t2 = time.perf_counter()
run()
t3 = time.perf_counter()
print(json.dumps(dict(imp=t1 - t0, first=t2 - t1, second=t3 - t2)))
"""


def measure(backend, cells, dtype, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-c", CHILD, backend, ",".join(cells), dtype],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--cells", nargs="+", default=["lstm"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeat", type=int, default=1, help="warm-cache runs to take")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fastseq-numba-cache-") as cache_dir:
        rows = [("empty cache", measure(args.backend, args.cells, args.dtype, cache_dir))]
        for _ in range(max(1, args.repeat)):
            rows.append(("warm cache", measure(args.backend, args.cells, args.dtype,
                                               cache_dir)))
    print(f"backend={args.backend} cells={','.join(args.cells)} dtype={args.dtype}")
    print(f"{'scenario':<12} {'import s':>9} {'first fwd+bwd s':>16} {'second s':>9} "
          f"{'total s':>8}")
    for label, r in rows:
        print(f"{label:<12} {r['imp']:9.2f} {r['first']:16.2f} {r['second']:9.4f} "
              f"{r['imp'] + r['first']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
