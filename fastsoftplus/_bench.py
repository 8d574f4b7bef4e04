"""``python -m fastsoftplus bench``: speed as a ratio to ``np.maximum(x, 0, out=y)``.

The ratio is median time(softplus(x, out=y)) / median time(np.maximum(x, 0, out=y)), both
measured in the same run, interleaved, on the same arrays (so machine load affects both): lower
is better, 1.0 means "as fast as ReLU". Minimal on purpose; the benchmarks/ suite is the thorough
one.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable, TextIO

import numpy as np

from . import _api, _dispatch, _threads

QUICK_SIZES = (1_000, 100_000, 1_000_000)
FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)


def _time_once(fn: Callable[[], object], number: int) -> float:
    t = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t) / number


def _measure(fn: Callable[[], object], base: Callable[[], object], repeats: int,
             budget: float) -> tuple[float, float]:
    """(median seconds of fn, median seconds of base), interleaved; each sample >= ~2 ms."""
    fn()  # warm up (a numba kernel compiles here)
    t1 = _time_once(fn, 1)
    number = max(1, int(2e-3 / max(t1, 1e-9)))
    repeats = max(3, min(repeats, int(budget / max(t1 * number, 1e-9))))
    ts, tb = [], []
    for _ in range(repeats):
        tb.append(_time_once(base, number))
        ts.append(_time_once(fn, number))
    return statistics.median(ts), statistics.median(tb)


def bench(sizes=None, dtypes=("float32", "float64"), backends=None, *, quick: bool = False,
          func: str = "softplus", file: TextIO | None = None) -> list[dict]:
    """Measure and print the ratio table; return its rows.

    Parameters
    ----------
    sizes : sequence of int, optional
        Array lengths (default: 1e3, 1e5, 1e6 with `quick`, up to 1e7 otherwise).
    dtypes : sequence of str
        ``"float32"`` and/or ``"float64"``.
    backends : sequence of str, optional
        Backends to time (default: all available); the automatic choice is always timed too.
    quick : bool
        Fewer sizes and repeats (a few seconds).
    func : str
        Which function to time (``softplus_backward`` gets ``grad_output = x``).

    Returns
    -------
    list of dict
        One per (dtype, n, backend): ``dtype, n, backend, seconds, baseline_seconds, ratio``.
    """
    file = file or sys.stdout
    sizes = tuple(sizes or (QUICK_SIZES if quick else FULL_SIZES))
    names = list(backends or _dispatch.available_backends())
    repeats, budget = (5, 0.5) if quick else (11, 2.0)
    f = getattr(_api, func)
    rng = np.random.default_rng(0)
    rows = []
    print(f"fastsoftplus bench: median time({func}(x, out=y)) / time(np.maximum(x, 0, out=y)); "
          f"lower is better", file=file)
    print(f"threads: {_threads.get_num_threads()}; x uniform in [-20, 20]; numpy {np.__version__}",
          file=file)
    head = f"{'dtype':8} {'n':>9} {'maximum':>10}" + "".join(f" {n:>8}" for n in names) + "  auto"
    print(head, file=file)
    for dt in dtypes:
        for n in sizes:
            x = rng.uniform(-20, 20, n).astype(dt)
            y = np.empty_like(x)
            args = (x, x) if func == "softplus_backward" else (x,)

            def base():
                np.maximum(x, 0, out=y)
            cells = []
            for name in names + [None]:
                def fn(name=name):
                    f(*args, out=y, backend=name)
                t, tb = _measure(fn, base, repeats, budget)
                label = name or _dispatch.choose(func, x.dtype, n, True, None).name
                rows.append(dict(dtype=dt, n=n, backend=name or f"auto ({label})", seconds=t,
                                 baseline_seconds=tb, ratio=t / tb))
                cells.append((t / tb, label))
            tb = rows[-1]["baseline_seconds"]
            line = f"{dt:8} {n:>9} {tb * 1e6:>8.1f}us"
            line += "".join(f" {r:>8.2f}" for r, _ in cells[:-1])
            line += f"  {cells[-1][0]:.2f} ({cells[-1][1]})"
            print(line, file=file, flush=True)
    return rows
