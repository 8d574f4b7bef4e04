"""Floors under the speed goals: how fast any kernel of a given shape can be on this machine.

For each goal of issue 5 (ratio to ``np.maximum(x, 0, out=y)`` on one thread, timed alternately
in this process, median of rounds), three figures beside fastsoftplus's own:

- ``copy``: y = x (backward: y = g + x, its two inputs) on the goal's threads (numba, blocks of
  16384 elements per thread): the memory traffic alone, with no arithmetic;
- ``toy``: the cheapest shape a float32 softplus can take -- exp by a cubic after the usual
  reduction, log1p(e) as e times a cubic, ``max(x, 0) +`` that, about 20 vector operations per
  vector of elements and a relative error up to 1.2e-3 (not a usable softplus: it shows the
  budget; benchmarks/test_floors.py checks the error);
- ``toy_min``: exp's reduction and one linear term only (~12 operations).

A goal below ``copy`` is out of reach for any elementwise kernel; a goal near ``toy`` leaves a
1-ulp kernel (the float32 one: ~70 instructions per vector of 16 in the AVX-512 loop where
every input lies in the plain range, ~105 elsewhere; objdump of _cy/kernels.h's loops) the time
of some 20 operations. Usage::

    python benchmarks/floors.py               # every goal, 7 rounds
    python benchmarks/floors.py --rounds 3

Not a pytest file: the figures are what it prints, not pass/fail.
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from numba import prange

import fastsoftplus as fsp
from fastsoftplus import _threads
from fastsoftplus._nbkernels import _pow2f, fma, wide_vectors
from report import GOALS  # issue 5's goals, listed once (this directory is on sys.path)

F = np.float32
_LOG2E, _LN2, _SHIFT = F(1.4426950408889634), F(0.6931471805599453), F(12582912.0)  # 1.5 * 2**23
BLOCK = 16384
#: Goals at fewer elements (the 1e3 call-overhead one) are left out: there these numba loops would
#: time numba's own dispatch (~2 us, more than ReLU's whole call), not a floor.
MIN_N = 10**4



@numba.njit(inline="always")
def _same(v):
    return v


@numba.njit(inline="always", error_model="numpy")
def _reduce(v):
    """-|v| = kf*ln2 + r, |r| <= ln2/2 (kf an integer-valued float32): exp's usual first step."""
    a = -abs(v)
    a = a if a > F(-87) else F(-87)
    kf = fma(a, _LOG2E, _SHIFT) - _SHIFT
    return kf, fma(kf, -_LN2, a)


@numba.njit(inline="always", error_model="numpy")
def _toy(v):
    kf, r = _reduce(v)
    e = fma(fma(fma(r, F(1 / 6), F(0.5)), r, F(1)), r, F(1)) * _pow2f(kf)
    # log1p(e)/e, e in (0, 1], by a cubic: least squares at Chebyshev nodes (numpy.polyfit)
    l1p = e * fma(fma(fma(e, F(-0.07474), F(0.25463)), e, F(-0.48665)), e, F(0.99962))
    return (v if v > 0 else F(0)) + l1p


@numba.njit(inline="always", error_model="numpy")
def _toy_min(v):
    kf, r = _reduce(v)
    return (v if v > 0 else F(0)) + fma(r, F(0.5), F(1)) * _pow2f(kf)


def _loops(kernel):
    """(serial, parallel) loops of y = kernel(x) over flat arrays; the parallel one hands blocks of
    BLOCK to the serial one (as the numba backend does). A closure, not a function argument:
    numba then calls `kernel` directly (inlined, vectorized) and dispatches in ~1 us, not ~7."""
    @numba.njit(error_model="numpy", nogil=True)
    def serial(x, y):
        wide_vectors()
        for i in range(x.shape[0]):
            y[i] = kernel(x[i])

    @numba.njit(parallel=True, nogil=True)
    def parallel(x, y):
        n = x.shape[0]
        for b in prange((n + BLOCK - 1) // BLOCK):
            lo, hi = b * BLOCK, min(b * BLOCK + BLOCK, n)
            serial(x[lo:hi], y[lo:hi])
    return serial, parallel


@numba.njit(nogil=True)
def _add(g, x, y):
    for i in range(x.shape[0]):
        y[i] = g[i] + x[i]


@numba.njit(parallel=True, nogil=True)
def _par_add(g, x, y):
    n = x.shape[0]
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = b * BLOCK, min(b * BLOCK + BLOCK, n)
        _add(g[lo:hi], x[lo:hi], y[lo:hi])


_LOOPS = {"copy": _loops(_same), "toy": _loops(_toy), "toy_min": _loops(_toy_min)}


def _median_s(f, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def measure(func: str, dtype: str, n: int, threads: int | str, rounds: int) -> dict[str, float]:
    """Ratios to ReLU (one thread) of copy, toy, toy_min and fastsoftplus for one goal (threads:
    a count or "all")."""
    nthreads = _threads.usable_cores() if threads == "all" else threads
    numba.set_num_threads(nthreads)
    fsp.set_num_threads(nthreads)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 5).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    y = np.empty_like(x)
    par = nthreads > 1
    runs = {"relu": lambda: np.maximum(x, 0, out=y)}
    if func == "softplus_backward":
        runs["copy"] = (lambda: _par_add(g, x, y)) if par else (lambda: _add(g, x, y))
        runs["fastsoftplus"] = lambda: fsp.softplus_backward(g, x, out=y)
    else:
        runs["fastsoftplus"] = lambda: getattr(fsp, func)(x, out=y)
    toys = ("toy", "toy_min") if dtype == "float32" and func == "softplus" else ()
    for name in ("copy",) * (func != "softplus_backward") + toys:
        loop = _LOOPS[name][par]
        runs[name] = lambda loop=loop: loop(x, y)
    for f in runs.values():
        f()  # compile, warm up
    reps = max(3, min(60, int(3e7 / n)))
    ratios: dict[str, list[float]] = {k: [] for k in runs if k != "relu"}
    for _ in range(rounds):
        for k in ratios:
            ratios[k].append(_median_s(runs[k], reps) / _median_s(runs["relu"], reps))
    return {k: float(np.median(v)) for k, v in ratios.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args(argv)
    print(f"{'goal':28s} {'bound':>6s} {'copy':>6s} {'toy':>6s} {'toy_min':>8s} {'fastsoftplus':>13s}")
    for label, func, dtype, n, threads, goal in GOALS:
        if n < MIN_N:
            continue
        r = measure(func, dtype, n, threads, a.rounds)
        cell = lambda k, w: f"{r[k]:{w}.2f}" if k in r else f"{'-':>{w}s}"  # noqa: E731
        print(f"{label:28s} {goal:6.2f} {cell('copy', 6)} {cell('toy', 6)} {cell('toy_min', 8)} "
              f"{cell('fastsoftplus', 13)}", flush=True)
    print("ratios to np.maximum(x, 0, out=y) on one thread, same process; lower is faster")


if __name__ == "__main__":
    main()
