"""Reliability (issue 7, part 2): multiprocessing pools with fork, spawn and forkserver.

For each start method and each backend, pool workers compute softplus, softplus_grad and
softplus_backward on small and large (multi-threaded path) inputs, and the results must equal the
parent's bit for bit. With fork, the parent has first called every backend with 2 threads on a
large array, so that its OpenMP/TBB pools are running when it forks (GNU OpenMP is not fork-safe:
a child entering a parallel region then hangs or dies unless the backend guards against it).
A second fork test forks while other threads of the parent are inside calls.

Every wait has a timeout, so a hang is a failure (the pool is terminated), never a stuck run. The
workers run the public functions themselves (``functools.partial(fastsoftplus.softplus,
backend=...)`` pickles by reference), so the children import only fastsoftplus.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import threading
import time

import numpy as np
import pytest

import fastsoftplus as fsp
from fastsoftplus import _dispatch

import arrays

BACKENDS = fsp.available_backends()
METHODS = [m for m in ("fork", "spawn", "forkserver") if m in mp.get_all_start_methods()]
FUNCS = ("softplus", "softplus_grad", "softplus_backward")
#: Seconds to wait for one batch of pool results before calling it a hang. Generous: a spawned
#: worker imports numpy, fastsoftplus and numba and loads the cached kernels (~2-5 s on the
#: shared 2-core machine, more under load).
TIMEOUT = 120.0
#: Above PARALLEL_MIN_N (32768), so the workers take the multi-threaded paths.
LARGE = 3 * _dispatch.PARALLEL_MIN_SIZE + 1


def _inputs() -> list[tuple]:
    """Argument tuples for the one-input functions: small, large, strided large, float32/64."""
    rng = np.random.default_rng(5)
    xs = [arrays.values(np.float64, 1000, rng), arrays.values(np.float32, LARGE, rng),
          arrays.values(np.float64, LARGE, rng), arrays.values(np.float32, 2 * LARGE, rng)[::2]]
    return [(x,) for x in xs]


def _args(func: str, ins: list[tuple]) -> list[tuple]:
    if func != "softplus_backward":
        return ins
    return [(np.cos(np.arange(x.size)).astype(x.dtype), x) for (x,) in ins]


def _expected(ins) -> dict:
    return {(b, f): [np.asarray(getattr(fsp, f)(*a, backend=b)) for a in _args(f, ins)]
            for b in BACKENDS for f in FUNCS}


def _warm_parent_threads() -> None:
    """Call every backend with 2 threads on a large array: their thread pools are now live."""
    fsp.set_num_threads(2)
    x = np.linspace(-40, 40, 4 * _dispatch.PARALLEL_MIN_SIZE)
    if "cython" in BACKENDS:  # no stall-guard holdoff in force: the OpenMP team does start
        _dispatch.backend_module("cython")._ext._guard_reset()
    for b in BACKENDS:
        fsp.softplus(x, backend=b)
        fsp.softplus_grad(x[::-1], backend=b)  # strided: the other parallel path


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and a.view(f"u{a.itemsize}").tobytes() == b.view(f"u{b.itemsize}").tobytes())


def _check_pool(pool, ins, expected, label: str) -> None:
    """Run every (backend, func) on the pool; compare; a batch that times out is a hang."""
    for (backend, func), want in expected.items():
        job = pool.starmap_async(functools.partial(getattr(fsp, func), backend=backend),
                                 _args(func, ins))
        try:
            got = job.get(timeout=TIMEOUT)
        except mp.TimeoutError:
            pytest.fail(f"{label}: {backend} {func} gave no result within {TIMEOUT:.0f} s "
                        f"(a worker hung or died)")
        for i, (g, w) in enumerate(zip(got, want)):
            assert _same_bits(np.asarray(g), w), (
                f"{label}: {backend} {func} input {i} ({w.dtype}[{w.size}]): the worker's result "
                f"differs from the parent's")


@pytest.mark.parametrize("method", METHODS)
def test_pool_results_match_parent(method):
    ins = _inputs()
    expected = _expected(ins)
    if method == "fork":
        _warm_parent_threads()
    ctx = mp.get_context(method)
    pool = ctx.Pool(2)
    try:
        _check_pool(pool, ins, expected, f"{method} pool")
        # a worker's own thread count setting works too (2 threads inside the child)
        r = pool.apply_async(fsp.set_num_threads, (2,))
        r.get(timeout=TIMEOUT)
        _check_pool(pool, ins, {k: v for k, v in expected.items() if k[1] == "softplus"},
                    f"{method} pool, second round")
    finally:
        pool.terminate()
        pool.join()
    # the parent still works after its children
    for (backend, func), want in expected.items():
        got = [getattr(fsp, func)(*a, backend=backend) for a in _args(func, ins)]
        assert all(_same_bits(np.asarray(g), w) for g, w in zip(got, want)), (backend, func)


@pytest.mark.skipif("fork" not in METHODS, reason="no fork on this platform")
def test_fork_while_other_threads_compute():
    """Fork while two parent threads are inside parallel calls (locks may be held at fork time):
    each child must still compute correctly and exit."""
    ins = _inputs()
    expected = _expected(ins)
    fsp.set_num_threads(2)
    stop = threading.Event()
    errors: list[str] = []
    x = np.linspace(-40, 40, 4 * _dispatch.PARALLEL_MIN_SIZE)

    def busy(backends):
        try:
            while not stop.is_set():
                for b in backends:
                    fsp.softplus(x, backend=b)
                    fsp.softplus_backward(x, x[::-1], backend=b)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=busy, args=(BACKENDS,), daemon=True),
               threading.Thread(target=busy, args=(BACKENDS[::-1],), daemon=True)]
    for t in threads:
        t.start()
    ctx = mp.get_context("fork")
    try:
        for round_ in range(3):
            time.sleep(0.05)  # let the threads get into their calls
            pool = ctx.Pool(1)
            try:
                _check_pool(pool, ins, expected, f"fork during calls, round {round_}")
            finally:
                pool.terminate()
                pool.join()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a parent thread hung"
    assert not errors, errors


@pytest.mark.skipif("fork" not in METHODS, reason="no fork on this platform")
def test_forked_child_exits_cleanly():
    """A bare forked child (no pool) that computes with every backend exits with status 0."""
    _warm_parent_threads()
    ins = _inputs()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for b in BACKENDS:
                for (x,) in ins:
                    fsp.softplus(x, backend=b)
                    fsp.softplus_grad(x, backend=b)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0, f"child status {status}"
