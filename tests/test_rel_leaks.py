"""Reliability (issue 7, part 5): no leaks.

- RSS: CALLS calls cycling through every backend (mostly small arrays, every LARGE_EVERY-th call a large one, about
  a fifth of them rejected calls) grow the resident set by less than RSS_LIMIT after a warm-up
  round of the same mix (which lets the allocators reach their steady state).
- References: the inputs, ``out``, beta/threshold objects and the results hold no more
  references after many calls (successful and rejected) than before (``sys.getrefcount``), and an
  input is freed as soon as the caller drops it (weak references).
"""

from __future__ import annotations

import gc
import math
import os
import sys
import weakref

import numpy as np
import pytest

import fastsoftplus as fsp

#: Calls measured for RSS growth, all backends together (the issue: 1e5).
CALLS = 100_000
#: Calls in the warm-up round before the first RSS reading.
WARMUP_CALLS = 10_000
#: Allowed RSS growth over CALLS calls (the issue: < 1 MiB).
RSS_LIMIT = 1 << 20
#: Every LARGE_EVERY-th call works on a large array (beyond the parallel cut-off).
LARGE_EVERY = 1000

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="RSS is read from /proc/self/statm (Linux only)")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _mix(backend: str):
    """The call mix: (callable, expect_error) pairs, cycled through."""
    rng = np.random.default_rng(1)
    small64 = rng.uniform(-30, 30, 16)
    small32 = small64.astype(np.float32)
    small16 = small64.astype(np.float16)
    ints = np.arange(-8, 8)
    large = rng.uniform(-30, 30, 300_000).astype(np.float32)
    out64 = np.empty(16)
    out_large = np.empty_like(large)
    bad_out = np.empty(15)
    cplx = small64.astype(complex)
    ok = [
        lambda: fsp.softplus(small64, backend=backend),
        lambda: fsp.softplus_grad(small32, 2.0, backend=backend),
        lambda: fsp.softplus_backward(small64, small64, out=out64, backend=backend),
        lambda: fsp.softplus_inverse(small16, backend=backend),
        lambda: fsp.softplus(ints, 0.5, None, backend=backend),
        lambda: fsp.softplus(1.5, backend=backend),
        lambda: fsp.softplus_grad([1.0, 2.0, 3.0], backend=backend),
        lambda: fsp.softplus(small64[::2], out=out64[:8], backend=backend),
    ]
    bad = [
        lambda: fsp.softplus(small64, 0.0, backend=backend),
        lambda: fsp.softplus(cplx, backend=backend),
        lambda: fsp.softplus(small64, out=bad_out, backend=backend),
        lambda: fsp.softplus_backward(small64[:3], small64, backend=backend),
        lambda: fsp.softplus([[1.0], [2.0, 3.0]], backend=backend),
        lambda: fsp.softplus(small64, 1.0, math.nan, backend=backend),
    ]
    large_calls = [
        lambda: fsp.softplus(large, backend=backend),
        lambda: fsp.softplus_backward(large, large, out=out_large, backend=backend),
        lambda: fsp.softplus_grad(large[::-1], backend=backend),
    ]
    return ok, bad, large_calls


def _run(ok, bad, large_calls, n: int) -> None:
    nok, nbad, nlarge = len(ok), len(bad), len(large_calls)
    for i in range(n):
        if i % LARGE_EVERY == 0:
            large_calls[(i // LARGE_EVERY) % nlarge]()
        elif i % 5 == 0:
            try:
                bad[(i // 5) % nbad]()
            except (TypeError, ValueError):
                pass
            else:
                raise AssertionError(f"bad call {(i // 5) % nbad} was accepted")
        else:
            ok[i % nok]()


def test_rss_does_not_grow():
    """CALLS calls in all, cycling through every backend (each gets CALLS / len(backends))."""
    mixes = [_mix(b) for b in fsp.available_backends()]
    ok = [c for m in mixes for c in m[0]]
    bad = [c for m in mixes for c in m[1]]
    large_calls = [c for m in mixes for c in m[2]]
    _run(ok, bad, large_calls, WARMUP_CALLS)
    gc.collect()
    before = _rss()
    _run(ok, bad, large_calls, CALLS)
    gc.collect()
    grown = _rss() - before
    print(f"RSS grew by {grown / 2**10:.0f} KiB over {CALLS} calls")
    assert grown < RSS_LIMIT, (f"RSS grew by {grown / 2**20:.2f} MiB over {CALLS} calls "
                               f"(limit {RSS_LIMIT / 2**20:.0f} MiB)")


REFCOUNT_CALLS = 50


def test_refcounts_unchanged(backend):
    x = np.linspace(-30, 30, 100)
    x32 = x.astype(np.float32)
    g = np.cos(x)
    out = np.empty(100)
    big = np.linspace(-30, 30, 70_000, dtype=np.float32)  # > PARALLEL_MIN_N: threaded paths
    beta = float("2.5")  # fresh (not interned) objects, so their counts are ours alone
    threshold = float("15.5")
    lst = [0.5, 1.5]
    tracked = {"x": x, "x32": x32, "g": g, "out": out, "big": big, "beta": beta,
               "threshold": threshold, "list": lst}

    def calls():
        fsp.softplus(x, beta, threshold, backend=backend)
        fsp.softplus(x, beta, threshold, out=out, backend=backend)
        fsp.softplus_backward(g, x, beta, threshold, out=out, backend=backend)
        fsp.softplus_grad(x32, beta, threshold, backend=backend)
        fsp.softplus_inverse(big, beta, threshold, backend=backend)
        fsp.softplus(lst, beta, threshold, backend=backend)
        y = x.copy()
        fsp.softplus(y, beta, threshold, out=y, backend=backend)
        for bad in (lambda: fsp.softplus(x, -beta, out=out, backend=backend),
                    lambda: fsp.softplus(x, beta, math.nan, out=out, backend=backend),
                    lambda: fsp.softplus(x32, beta, threshold, out=out, backend=backend),
                    lambda: fsp.softplus_backward(g[:7], x, beta, out=out, backend=backend),
                    lambda: fsp.softplus(x, beta, threshold, out=out, backend="nope")):
            try:
                bad()
            except (TypeError, ValueError):
                pass

    calls()  # warm-up: lazy imports, compiled kernels, caches
    gc.collect()
    before = {k: sys.getrefcount(v) for k, v in tracked.items()}
    for _ in range(REFCOUNT_CALLS):
        calls()
    gc.collect()
    after = {k: sys.getrefcount(v) for k, v in tracked.items()}
    assert after == before, f"{backend}: reference counts changed: before {before}, after {after}"

    # a result holds only the caller's references; out= returns the same object, no new ref
    r = fsp.softplus(x, beta, threshold, backend=backend)
    assert sys.getrefcount(r) == 2  # r and the getrefcount argument
    n = sys.getrefcount(out)
    r = fsp.softplus(x, beta, threshold, out=out, backend=backend)
    assert r is out and sys.getrefcount(out) == n + 1
    del r
    assert sys.getrefcount(out) == n


def test_inputs_freed_when_dropped(backend):
    """Nothing in the library keeps an input or a result alive (no cache of arrays)."""
    refs = []
    for n in (10, 200_000):
        x = np.linspace(-5, 5, n)
        out = np.empty(n)
        y = fsp.softplus(x, backend=backend)
        fsp.softplus_backward(x, x, out=out, backend=backend)
        try:
            fsp.softplus(x, 0.0, out=out, backend=backend)
        except ValueError:
            pass
        refs += [weakref.ref(x), weakref.ref(out), weakref.ref(y)]
        del x, out, y
    gc.collect()
    alive = [i for i, r in enumerate(refs) if r() is not None]
    assert not alive, f"{backend}: arrays {alive} still alive after the caller dropped them"
