"""Threaded calls while another process holds a core: the measurement behind the stall guard.

For each size and dtype: softplus through each compiled backend's ``run()`` with 2 threads, the
median of repeated calls divided by the best serial time, with the machine idle and then with a
second process spinning (``while True: pass``) so that one of the two cores is taken. An OpenMP
team waits at its closing barrier for a worker the OS has not run; the cython loops' stall guard
(``_cy/fsp_loops.c``) then runs the next calls on one thread. Usage::

    python benchmarks/contention.py                 # 1e5, 1e6, 1e7 elements, float32 and float64
    python benchmarks/contention.py --sizes 262144 --dtypes float64 --seconds 3

Not a pytest file: it takes a core from the machine for its whole run.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

from fastsoftplus import _dispatch


def _median_s(run, x, y, nthreads: int, seconds: float) -> tuple[float, float, int]:
    """Median and max time of back-to-back calls for about `seconds`, and how many ran."""
    ts = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(ts) < 5:
        t = time.perf_counter()
        run("softplus", (x,), y, 1.0, 20.0, nthreads)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), max(ts), len(ts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--seconds", type=float, default=1.5, help="per backend and case (default 1.5)")
    a = p.parse_args(argv)
    names = [n for n in ("cython", "numba") if n in _dispatch.available_backends()]
    mods = {n: _dispatch.backend_module(n) for n in names}
    guard = getattr(getattr(mods.get("cython"), "_ext", None), "stall_guard", None)
    print("softplus, 2 threads: median call time / best serial time (< 1: threads win)")
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            time.sleep(0.3)
            for dt in a.dtypes:
                for n in a.sizes:
                    x = np.random.default_rng(0).uniform(-5, 5, int(n)).astype(dt)
                    y = np.empty_like(x)
                    cells = []
                    serial = min(_median_s(mods[b].run, x, y, 1, a.seconds / 3)[0] for b in names)
                    for b in names:
                        before = guard()["serial_calls"] if guard and b == "cython" else 0
                        med, mx, calls = _median_s(mods[b].run, x, y, 2, a.seconds)
                        held = ""
                        if guard and b == "cython":
                            held = f", {guard()['serial_calls'] - before}/{calls} calls on 1 thread"
                        cells.append(f"{b} {med / serial:5.2f} (max {mx * 1e3:.2f} ms{held})")
                    print(f"{'busy' if busy else 'idle'} {dt} n={n:.0e}: serial {serial * 1e3:.3f} ms"
                          f" | " + " | ".join(cells), flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()


if __name__ == "__main__":
    main()
