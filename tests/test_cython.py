"""The "cython" backend: ISA variants, layouts, float16, threads, fork, FP flags, ufunc plumbing.

Accuracy proper lives in test_accuracy.py; here every variant is checked against the reference
(``fastsoftplus._reference.evaluate``) within 1 ULP (backward: 2, see test_backends.py), and every
non-contiguous path against the contiguous SIMD path bit for bit (they run the same loop over
copied blocks).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import arrays

try:
    import fastsoftplus._cython as cy
except ImportError as exc:  # the extension is optional: say why it is skipped
    pytest.skip(f"cython backend unavailable: {exc}", allow_module_level=True)

import fastsoftplus as fsp
from fastsoftplus._cy import _ext
from fastsoftplus._reference import evaluate

FUNCS = _ext.FUNCS
UNARY = ("softplus", "softplus_grad", "softplus_inverse")
FLOATS = (np.float32, np.float64)
SUPPORTED = _ext.supported_simd()
# One inner-loop call large enough to start threads, with a ragged tail.
BIG = 3 * _ext.PARALLEL_MIN_N + 123


def _inputs(func, x, g=None):
    return (x,) if func != "softplus_backward" else ((np.ones_like(x) if g is None else g), x)


def _call(func, x, beta=1.0, thr=20.0, g=None, **kw):
    return _ext.UFUNCS[func](*_inputs(func, x, g), beta, thr, **kw)


def _run(func, ins, beta, thr, nthreads=1, simd=None, out=None):
    if out is None:
        out = np.empty(np.broadcast_shapes(*(a.shape for a in ins)), ins[-1].dtype)
    _ext.run(func, ins, out, beta, thr, nthreads, simd=simd)
    return out


def _assert_same(actual, expected, what=""):
    """Bit-identical, NaN included (the same kernel computed both)."""
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.dtype == e.dtype and a.shape == e.shape, what
    bad = a.view(f"u{a.itemsize}") != e.view(f"u{e.itemsize}")
    bad &= ~(np.isnan(a) & np.isnan(e))
    if bad.any():
        i = np.flatnonzero(bad.ravel())[:5]
        raise AssertionError(f"{what}: {int(bad.sum())} elements differ, e.g. at {i.tolist()}: "
                             f"{a.ravel()[i]!r} vs {e.ravel()[i]!r}")


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def data():
    """float32/float64 test values: bulk, whole-range magnitudes, specials (shuffled)."""
    r = np.random.default_rng(7)
    return {dt: arrays.values(dt, 4000, r) for dt in FLOATS}


# ---- build / import -----------------------------------------------------------------------------

def test_protocol_surface():
    assert cy.NAME == "cython"
    info = cy.info()
    assert info["simd"] in SUPPORTED and info["openmp"] in ("yes", "no")
    assert set(cy.UFUNCS) == set(FUNCS)
    assert SUPPORTED[-1] == "baseline" and _ext.get_simd() == SUPPORTED[0]


def test_ufunc_objects():
    for name, uf in cy.UFUNCS.items():
        assert isinstance(uf, np.ufunc) and uf.__name__ == name
        nin = 4 if name == "softplus_backward" else 3
        assert (uf.nin, uf.nout) == (nin, 1)
        sigs = ["e" + "f" * (nin - 1), "e" * nin, "f" * nin, "d" * nin]
        if name == "softplus_backward":
            sigs[0] = "eeff"
        assert uf.types == [s + "->" + s[0] for s in sigs]
        assert "Returns" in uf.__doc__
        assert pickle.loads(pickle.dumps(uf)) is uf


def test_import_error_names_the_reason():
    code = ("import sys; sys.modules['fastsoftplus._cy._ext'] = None\n"
            "try:\n    import fastsoftplus._cython\nexcept ImportError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "fastsoftplus._cy._ext" in r.stdout, r.stdout + r.stderr


# ---- every ISA variant against the reference ------------------------------------------------------

@pytest.mark.parametrize("simd", SUPPORTED)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("func", FUNCS)
def test_variant_vs_reference(simd, dtype, func, data):
    x = data[dtype]
    g = np.linspace(-3, 3, x.size).astype(dtype)
    # beta a power of two >= 1: beta*x is exact (subnormals too; overflow gives inf, handled
    # exactly), so 1 ULP holds without a conditioning allowance. backward: 2, as in
    # test_backends (g * grad rounds twice; the reference once).
    allowed = 2.0 if func == "softplus_backward" else 1.0
    for beta, thr in ((1.0, 20.0), (2.0, math.inf), (4.0, 1.0)):
        ins = _inputs(func, x, g)
        got = _run(func, ins, beta, thr, simd=simd)
        want = evaluate(func, *ins, beta=beta, threshold=thr)
        arrays.assert_ulp(got, want, allowed, inputs={"x": x},
                          what=f"{func} {np.dtype(dtype)} {simd} beta={beta} thr={thr}")


@pytest.mark.parametrize("simd", SUPPORTED)
def test_variant_specials(simd):
    for dtype in FLOATS:
        x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype)
        sp = _run("softplus", (x,), 2.0, 20.0, simd=simd)
        assert np.isnan(sp[0]) and sp[1] == np.inf and sp[2] == 0
        assert sp[3] == sp[4] == dtype(math.log(2) / 2)
        gr = _run("softplus_grad", (x,), 1.0, math.inf, simd=simd)
        assert np.isnan(gr[0]) and gr[1] == 1 and gr[2] == 0 and gr[3] == 0.5
        inv = _run("softplus_inverse", (x,), 1.0, 20.0, simd=simd)
        assert np.isnan(inv[[0, 2, 3, 4]]).all() and inv[1] == np.inf


def test_set_simd_switches_the_ufuncs(data):
    x = data[np.float64]
    try:
        for v in SUPPORTED:
            _ext.set_simd(v)
            assert _ext.get_simd() == v
            _assert_same(_ext.softplus(x, 1.0, 20.0), _run("softplus", (x,), 1.0, 20.0, simd=v), v)
    finally:
        _ext.set_simd(SUPPORTED[0])
    with pytest.raises(ValueError, match="unknown SIMD variant"):
        _ext.set_simd("sse9")
    with pytest.raises(ValueError, match="unknown SIMD variant"):
        _run("softplus", (x,), 1.0, 20.0, simd="neon")


@pytest.mark.parametrize("request_", ["avx512", "avx2", "baseline"])
def test_forced_simd_env(request_):
    env = {**os.environ, "FASTSOFTPLUS_SIMD": request_}
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from fastsoftplus._cy import _ext; import fastsoftplus._cython as c\n"
            "print(_ext.get_simd(), c.info()['simd'])")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    got = r.stdout.split()
    if request_ in SUPPORTED:
        assert got == [request_, request_] and "FASTSOFTPLUS_SIMD" not in r.stderr
    else:  # documented behaviour: a warning, then the best supported variant below the request
        order = ["avx512", "avx2", "baseline"]
        below = [v for v in SUPPORTED if order.index(v) > order.index(request_)]
        assert got[0] == below[0] and "FASTSOFTPLUS_SIMD" in r.stderr


def test_unknown_simd_env_warns_and_uses_best():
    env = {**os.environ, "FASTSOFTPLUS_SIMD": "sse9"}
    code = "from fastsoftplus._cy import _ext; print(_ext.get_simd())"
    r = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == SUPPORTED[0] and "FASTSOFTPLUS_SIMD='sse9'" in r.stderr


# ---- layouts through the ufuncs -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("func", FUNCS)
def test_strided_layouts_match_contiguous(func, dtype, rng):
    base = rng.uniform(-40, 40, (64, 2 * _ext.BLOCK + 37)).astype(dtype)
    views = {
        "every 3rd": base.ravel()[::3],
        "negative": base.ravel()[::-2],
        "transposed": base.T,
        "column": base[:, 5],
        "2-D slice": base[::2, ::-3],
    }
    for name, v in views.items():
        want = _call(func, np.ascontiguousarray(v), 2.0, 20.0)
        _assert_same(_call(func, v, 2.0, 20.0), want, f"{func} {name}")
        out = np.zeros(v.shape + (2,), dtype)[..., 0]          # strided output
        r = _call(func, v, 2.0, 20.0, out=out)
        assert r is out
        _assert_same(out, want, f"{func} {name} strided out")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("func", FUNCS)
def test_in_place(func, dtype, rng):
    x = rng.uniform(-30, 30, 3 * _ext.BLOCK + 5).astype(dtype)
    want = _call(func, x, 1.0, 20.0, g=x)
    a = x.copy()
    _ext.UFUNCS[func](*_inputs(func, a, a), 1.0, 20.0, out=a)
    _assert_same(a, want, "contiguous in place")
    b = np.repeat(x, 2)  # in place on a strided view
    v = b[::2]
    _ext.UFUNCS[func](*_inputs(func, v, v), 1.0, 20.0, out=v)
    _assert_same(v, want, "strided in place")
    assert (b[1::2] == x).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_backward_broadcast_grad_output(dtype, rng):
    x = rng.uniform(-30, 30, 1000).astype(dtype)
    g = dtype(-1.5)
    want = _ext.softplus_backward(np.full_like(x, g), x, 1.0, 20.0)
    _assert_same(_ext.softplus_backward(g, x, 1.0, 20.0), want, "scalar g")
    _assert_same(_ext.softplus_backward(np.broadcast_to(g, x.shape), x, 1.0, 20.0), want,
                 "zero-stride g")
    g2 = rng.uniform(-2, 2, (3, 1)).astype(dtype)
    got = _ext.softplus_backward(g2, x, 1.0, 20.0)  # (3, 1000)
    for i in range(3):
        _assert_same(got[i], _ext.softplus_backward(np.full_like(x, g2[i, 0]), x, 1.0, 20.0))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("func", FUNCS)
def test_per_element_beta_threshold(func, dtype, rng):
    x = rng.uniform(-30, 30, (700, 1)).astype(dtype)
    betas = np.array([0.5, 1.0, 3.0], dtype)
    thrs = np.array([20.0, 1.0, np.inf], dtype)
    got = _call(func, x, betas, thrs)  # (700, 3): beta/threshold vary along the last axis
    assert got.shape == (700, 3)
    for j in range(3):
        _assert_same(got[:, j], _call(func, x[:, 0], betas[j], thrs[j]), f"{func} column {j}")


def test_where_out_dtype_and_shapes(rng):
    x = rng.uniform(-5, 5, (4, 300))
    mask = rng.random((4, 300)) < 0.5
    out = np.full_like(x, -7.0)
    _ext.softplus(x, 1.0, 20.0, out=out, where=mask)
    full = _ext.softplus(x, 1.0, 20.0)
    assert (out[~mask] == -7.0).all() and (out[mask] == full[mask]).all()
    r32 = _ext.softplus(x, 1.0, 20.0, dtype=np.float32)
    assert r32.dtype == np.float32
    _assert_same(r32, _ext.softplus(x.astype(np.float32), 1.0, 20.0))
    assert _ext.softplus(np.zeros((0, 3)), 1.0, 20.0).shape == (0, 3)
    s = _ext.softplus(np.float64(0.0), 1.0, 20.0)
    assert np.isscalar(s) and s == math.log(2)
    # unaligned input: NumPy hands the loop an aligned copy or we read it with memcpy
    buf = np.zeros(8 * 1000 + 1, np.uint8)
    u = buf[1:].view(np.float64)
    u[:] = x.ravel()[:1000]
    _assert_same(_ext.softplus(u, 1.0, 20.0), full.ravel()[:1000])


@pytest.mark.parametrize("func", FUNCS)
def test_float16(func, rng):
    x = rng.uniform(-20, 20, 3000).astype(np.float16)
    g = rng.uniform(-2, 2, 3000).astype(np.float16)
    x32, g32 = x.astype(np.float32), g.astype(np.float32)
    for beta in (1.0, 0.1):  # 0.1 must stay a float32 beta, not become float16(0.1)
        got = _call(func, x, beta, 20.0, g=g)
        assert got.dtype == np.float16
        want = _call(func, x32, np.float32(beta), 20.0, g=g32).astype(np.float16)
        _assert_same(got, want, f"{func} beta={beta}")
    # all-float16 operands and dtype=float16 (the "eee->e" loop; beta exact in float16)
    b16 = np.float16(0.5)
    want = _call(func, x32, np.float32(b16), 20.0, g=g32).astype(np.float16)
    _assert_same(_call(func, x, b16, np.float16(20), g=g), want, "all float16")
    _assert_same(_call(func, x32, 0.5, 20.0, g=g32, dtype=np.float16), want, "dtype=float16")
    # strided float16 with per-element float16 beta
    bb = np.full(1500, b16)
    _assert_same(_call(func, x[::2], bb, np.float16(20), g=g[::2]), want[::2], "strided f16")


def test_float16_conversions_round_trip():
    """Every finite float16 survives the loops' float16 -> float32 -> float16 conversions."""
    bits = np.arange(2 ** 16, dtype=np.uint16).view(np.float16)
    bits = bits[np.isfinite(bits)]
    # backward with x far above the threshold returns g itself: only the conversions act

    x = np.full(bits.shape, 60000, np.float16)
    out = _ext.softplus_backward(bits, x, 1.0, 20.0)
    _assert_same(out, bits, "half -> float -> half round trip")


# ---- threads --------------------------------------------------------------------------------------

def _threaded_run(*args, **kw):
    """_run with the stall guard cleared first: the call then runs the threads it asks for, even
    if an earlier (oversubscribed) call stalled; the guard itself is tested below."""
    _ext._guard_reset()
    return _run(*args, **kw)


@pytest.mark.skipif(not _ext.openmp, reason="built without OpenMP")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("func", FUNCS)
def test_thread_counts_give_identical_results(func, dtype, rng):
    x = rng.uniform(-40, 40, BIG).astype(dtype)
    g = rng.uniform(-2, 2, BIG).astype(dtype)
    ins = _inputs(func, x, g)
    one = _run(func, ins, 1.0, 20.0, nthreads=1)
    assert _ext._last_team_size() == 1
    grain_cap = BIG // _ext.PARALLEL_GRAIN
    for nt in (2, 64, 10 ** 12):  # absurd counts are cut (MAX_THREADS, grain), not refused
        _assert_same(_threaded_run(func, ins, 1.0, 20.0, nthreads=nt), one, f"contiguous nthreads={nt}")
        assert _ext._last_team_size() == min(nt, grain_cap, _ext.MAX_THREADS)  # threads ran
    x2 = np.repeat(x, 2)[::2]  # strided: the chunked path, threaded
    ins2 = _inputs(func, x2, g)
    for nt in (1, 2, 64):
        _assert_same(_threaded_run(func, ins2, 1.0, 20.0, nthreads=nt), one, f"strided nthreads={nt}")
        assert _ext._last_team_size() == min(nt, grain_cap)
    _run(func, tuple(a[: _ext.PARALLEL_MIN_N - 1] for a in ins), 1.0, 20.0, nthreads=2)
    assert _ext._last_team_size() == 1  # below PARALLEL_MIN_N: serial


def test_ufunc_thread_count_setting(rng):
    x = rng.uniform(-40, 40, BIG)
    one = _run("softplus", (x,), 1.0, 20.0, nthreads=1)
    old = _ext.get_num_threads()
    try:
        for nt in (1, 2, 64, 10 ** 6):
            _ext.set_num_threads(nt)
            assert _ext.get_num_threads() == nt
            _ext._guard_reset()
            _assert_same(_ext.softplus(x, 1.0, 20.0), one, f"set_num_threads({nt})")
            if _ext.openmp:
                assert _ext._last_team_size() == min(nt, BIG // _ext.PARALLEL_GRAIN)
    finally:
        _ext.set_num_threads(old)
    for bad, exc in ((0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(exc):
            _ext.set_num_threads(bad)


def test_many_python_threads_at_once(rng):
    jobs = []
    for i in range(48):
        func = FUNCS[i % 4]
        dtype = FLOATS[(i // 4) % 2]
        n = BIG if i % 3 == 0 else 1000 + i
        x = rng.uniform(-30, 30, n).astype(dtype)
        if i % 5 == 0:
            x = np.repeat(x, 2)[::2]
        ins = _inputs(func, x, x[::-1].copy())
        beta = (0.5, 1.0, 2.0)[i % 3]
        simd = SUPPORTED[i % len(SUPPORTED)]  # variants may differ by an ULP: compare like with like
        jobs.append((func, ins, beta, i % 4 + 1, simd, _run(func, ins, beta, 20.0, simd=simd),
                     _run(func, ins, beta, 20.0)))
    barrier = threading.Barrier(8)

    def work(k):
        barrier.wait()
        for j in range(k, len(jobs), 8):
            func, ins, beta, nt, simd, want_simd, want = jobs[j]
            got = _run(func, ins, beta, 20.0, nthreads=nt, simd=simd)
            _assert_same(got, want_simd, f"job {j} via run(simd={simd!r})")
            _assert_same(_ext.UFUNCS[func](*ins, beta, 20.0), want, f"job {j} via ufunc")
        return True

    with ThreadPoolExecutor(8) as ex:
        assert all(ex.map(work, range(8)))


def _child(q, n):
    from fastsoftplus._cy import _ext as e
    x = np.linspace(-5, 5, n)
    y = e.softplus(x, 1.0, 20.0)
    o = np.empty_like(x)
    e.run("softplus", (x,), o, 1.0, 20.0, 2)
    q.put((float(y.sum()), float(o.sum()), e.serial_only(), e._last_team_size()))


@pytest.mark.skipif(not _ext.openmp, reason="built without OpenMP")
@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_forked_child_after_parallel_call():
    x = np.linspace(-5, 5, BIG)
    o = np.empty_like(x)
    _ext._guard_reset()
    _ext.run("softplus", (x,), o, 1.0, 20.0, 2)  # the parent has used an OpenMP team
    assert _ext._last_team_size() == 2
    # (without the fork hook, i.e. _ext._set_serial_only(False) in the child, the child hangs:
    # checked by hand; not run here because it costs the whole timeout)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        p = ctx.Process(target=_child, args=(q, BIG))
        p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail("the forked child hung in its OpenMP call")
    assert p.exitcode == 0
    ysum, osum, serial, team = q.get(timeout=10)
    assert serial is True and team == 1
    assert ysum == osum == float(o.sum())
    assert not _ext.serial_only()  # the parent keeps its threads


@pytest.fixture
def fresh_guard():
    _ext._guard_reset()
    yield _ext.stall_guard
    _ext._guard_reset()


def _stall(work=1e-4):
    """Record a stalled threaded call: its caller computed `work` s, then waited 10x longer."""
    _ext._guard_note(work, max(10 * work, 2 * _ext.STALL_MIN_S))


@pytest.mark.skipif(not _ext.openmp, reason="built without OpenMP")
def test_stall_guard_runs_one_thread_for_its_holdoff(fresh_guard, rng):
    """After a stall the threads did not pay for, threaded calls run on one thread, with the
    same results, until the holdoff ends; then threads again."""
    x = rng.uniform(-40, 40, BIG)
    want = _run("softplus", (x,), 1.0, 20.0, nthreads=1)
    fsp.explain(x)  # (its first call loads the backends: not inside the holdoff below)
    lo = _ext.STALL_HOLDOFF_MIN_S
    _stall()  # the first: paid for by the calls before it (none stalled), no holdoff
    assert not fresh_guard()["pending"]
    t0 = time.monotonic()
    _stall()  # right after it: unpaid
    g = fresh_guard()
    assert g["stalls"] == 2 and g["serial_calls"] == 0 and g["pending"] and g["left_s"] <= lo
    # explain() names the holdoff where the automatic choice is this backend on threads (not
    # with FASTSOFTPLUS_DISABLE=cython, where this module still runs but the dispatcher skips it)
    auto_here = "cython" in fsp.available_backends() and fsp.get_num_threads() > 1
    said = fsp.explain(np.zeros(BIG)) if auto_here else "stall guard (not asked)"
    got = _run("softplus", (x,), 1.0, 20.0, nthreads=2)
    if time.monotonic() - t0 < lo:  # (a descheduled test runner may have outlived the holdoff)
        assert _ext._last_team_size() == 1 and fresh_guard()["serial_calls"] == 1
        assert "stall guard" in said, said
    _assert_same(got, want, "2 threads asked, 1 in the holdoff")
    time.sleep(max(0.0, fresh_guard()["left_s"]) + 0.01)
    _assert_same(_run("softplus", (x,), 1.0, 20.0, nthreads=2), want, "after the holdoff")
    assert _ext._last_team_size() == 2 and not fresh_guard()["pending"]  # probed: threads again


@pytest.mark.skipif(not _ext.openmp, reason="built without OpenMP")
def test_stall_guard_policy(fresh_guard):
    """What a stall is; which stalls the threads paid for (no holdoff); the doubling holdoff."""
    lo, hi, tiny = _ext.STALL_HOLDOFF_MIN_S, _ext.STALL_HOLDOFF_MAX_S, _ext.STALL_MIN_S
    assert 0 < tiny < lo < hi
    _ext._guard_note(0.0, 0.9 * tiny)  # waited more than it computed, but too short to matter
    _ext._guard_note(2.0, 1.5)  # waited long, but less than it computed: a long call
    assert fresh_guard()["stalls"] == 0
    _stall()
    assert fresh_guard()["stalls"] == 1 and not fresh_guard()["pending"]  # paid for
    want = lo
    for k in range(12):  # unpaid stalls in a row: the holdoff doubles up to its maximum
        _stall()
        g = fresh_guard()
        assert g["stalls"] == k + 2 and g["pending"] and g["left_s"] <= want
        want = min(2 * want, hi)
        assert g["holdoff_s"] == want
    assert want == hi
    # a call of a team of nt whose caller computed w saved (nt - 1) * w: a stall that waited
    # 24 w is paid for by 24 such calls of 2 threads, 8 of 4 threads (exact binary fractions)
    w = 2.0 ** -10
    for calls, nt, paid in ((23, 2, False), (24, 2, True), (7, 4, False), (8, 4, True)):
        _ext._guard_reset()
        _stall()  # (paid for: counting starts here)
        for _ in range(calls):
            _ext._guard_note(w, 1e-6, nt)  # threaded calls that did not stall
        _ext._guard_note(w, 24 * w)
        g = fresh_guard()
        assert g["stalls"] == 2 and g["pending"] != paid, (calls, nt)
        assert g["holdoff_s"] == (lo if paid else 2 * lo)


# ---- floating-point status ------------------------------------------------------------------------

def test_no_floating_point_warnings():
    with np.errstate(all="ignore"):
        x = np.array([np.nan, np.inf, -np.inf, 1e308, -1e308, 3e38, -3e38, 0.0, -0.0, -1.0,
                      5e-324, 1e-40, 88.8, 89.0, 709.9, 710.0, -746.0, -1e5, 1e5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            for dtype in (np.float16, np.float32, np.float64):
                with np.errstate(all="ignore"):
                    xx = x.astype(dtype)
                for func in FUNCS:
                    for beta, thr in ((1.0, 20.0), (1.0, math.inf), (0.5, -math.inf),
                                      (10.0, 1.0)):
                        _call(func, xx, beta, thr, g=xx)
                        _call(func, np.repeat(xx, 2)[::2], beta, thr, g=xx)
                    if dtype is not np.float16:
                        # out-of-range beta/threshold are rounded in C by run(): no warning
                        _run(func, _inputs(func, xx, xx), 1e300, 1e300)
                        _run(func, _inputs(func, xx, xx), 1e-300, -1e300)


def test_numpy_own_fp_errors_still_reported():
    """Flags raised outside our loops (here NumPy's cast) are kept, not wiped."""
    with pytest.warns(RuntimeWarning, match="overflow"):
        _ext.softplus(np.array([1e300, 1.0]), 1.0, 20.0, dtype=np.float32)


# ---- the run() protocol -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_run_protocol_layouts(dtype, rng):
    x = rng.uniform(-30, 30, (50, 40)).astype(dtype)
    want = _call("softplus", x, 2.0, math.inf)
    out = np.empty((40, 50), dtype).T  # F-ordered out
    cy.run("softplus", (x,), out, 2.0, math.inf, 2)
    _assert_same(out, want)
    xb = np.broadcast_to(x[:1], x.shape)  # zero strides
    out = np.empty_like(x)
    cy.run("softplus_backward", (np.broadcast_to(dtype(3), x.shape), xb), out, 1.0, 20.0, 1)
    _assert_same(out, np.broadcast_to(_ext.softplus_backward(dtype(3), x[0], 1.0, 20.0), x.shape))
    a = x.copy()
    cy.run("softplus_grad", (a,), a, 1.0, 20.0, 3)
    _assert_same(a, _call("softplus_grad", x, 1.0, 20.0))
    r = x[::-1, ::-2]
    out = np.empty(r.shape, dtype)
    cy.run("softplus_inverse", (r,), out, 1.0, 20.0, 2)
    _assert_same(out, _call("softplus_inverse", np.ascontiguousarray(r), 1.0, 20.0))


# --- The compiled loops vectorize: packed zmm/ymm arithmetic, no libm call --------------------

_PACKED = ("vfmadd", "vfnmadd", "vmulp", "vaddp", "vsubp", "vdivp")
_LIBM_CALL = ("exp", "log", "expm1", "log1p", "fma", "fmax", "fmin", "ldexp", "frexp")


def _disassembly(symbol_prefix: str) -> dict[str, str]:
    """objdump -d of the extension, split per function whose name starts with symbol_prefix."""
    so = _ext.__file__
    try:
        text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", so], capture_output=True,
                              text=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"objdump unavailable: {exc}")
    funcs, name = {}, None
    for line in text.splitlines():
        if line.endswith(">:"):
            name = line.split("<", 1)[1][:-2]
            if name.startswith(symbol_prefix):
                funcs[name] = ""
            else:
                name = None
        elif name is not None:
            funcs[name] += line + "\n"
    return funcs


@pytest.mark.parametrize("variant,reg", [("avx512", "zmm"), ("avx2", "ymm")])
def test_loops_vectorize(variant, reg):
    """Every contiguous loop of the variant (fsp_loop_<func>_<dtype>_<variant>) uses packed
    arithmetic on its widest registers and calls nothing: a libm call would keep it scalar."""
    if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        pytest.skip("the ISA variants exist on x86-64 Linux builds")
    loops = {n: asm for n, asm in _disassembly("fsp_loop_").items() if n.endswith("_" + variant)}
    expected = {f"fsp_loop_{f}_{d}_{variant}" for f in ("softplus", "grad", "backward", "inverse")
                for d in ("f32", "f64")}
    assert expected <= set(loops), f"missing loops: {sorted(expected - set(loops))}"
    for name in sorted(expected):
        asm = loops[name]
        packed = [ln for ln in asm.splitlines() if any(op in ln for op in _PACKED) and f"%{reg}" in ln]
        calls = [ln for ln in asm.splitlines() if "call" in ln]
        assert len(packed) >= 20, f"{name}: only {len(packed)} packed {reg} arithmetic instructions"
        assert not calls, f"{name} calls out (a libm call keeps the loop scalar): {calls[:3]}"
        assert not any(f"<{fn}" in asm for fn in _LIBM_CALL), f"{name} references libm"
