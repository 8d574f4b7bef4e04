"""The API's fast path (``_api._FAST``): small, plain calls go straight to the serial loop.

It is the cython backend's ``_ext.fast`` (checks in C) where that backend loads, else numba's
``_numba.fast`` (checks in Python; CI's FASTSOFTPLUS_DISABLE=cython run tests it). It must be
invisible: the same values, the same errors and the same treatment of ``out`` as the general
path, and it must step aside whenever the general path would decide differently (another backend
forced, a size for another backend or for threads, beta != 1, an unusual ``out``). ``use_backend``
blocks always take the general path, which the tests below use as the reference.
"""
import numpy as np
import pytest

import fastsoftplus as fsp
from fastsoftplus import _dispatch

#: the backend whose fast path is in use
FAST = next((n for n in ("cython", "numba") if n in fsp.available_backends()), None)
pytestmark = pytest.mark.skipif(FAST is None, reason="no compiled backend: no fast path")

FUNCS = ["softplus", "softplus_grad", "softplus_backward", "softplus_inverse"]


class Calls(list):
    """The fast-path calls that computed (list items) and those that declined (``.declined``)."""
    declined = 0


@pytest.fixture
def calls(monkeypatch):
    """Record the calls that the fast path computed."""
    from fastsoftplus import _api
    fsp.softplus(np.zeros(4), beta=2.0)  # a general-path call: settles the automatic choice
    real = _api._FAST
    assert real is not None, "the fast path was not set up by the first call"
    assert real.__module__.endswith({"cython": "_ext", "numba": "_numba"}[FAST])
    seen = Calls()

    def counting(*args):
        r = real(*args)
        if r is None:  # declined (not a plain call, or an unsuitable out): nothing written
            seen.declined += 1
        else:
            seen.append(args[0])
        return r

    monkeypatch.setattr(_api, "_FAST", counting)
    return seen


def _call(func, x, **kw):
    if func == "softplus_backward":
        return fsp.softplus_backward(np.linspace(-3, 3, x.size).astype(x.dtype).reshape(x.shape), x, **kw)
    return getattr(fsp, func)(x, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("func", FUNCS)
def test_taken_and_bitwise_equal_to_the_general_path(calls, func, dtype):
    x = np.concatenate([np.linspace(-120, 60, 997), [np.nan, np.inf, -np.inf]]).astype(dtype)
    if func == "softplus_inverse":
        x = np.abs(x)
    x = x.reshape(10, 100)
    for kw in ({}, {"threshold": None}, {"threshold": 1.5}):
        got = _call(func, x, **kw)
        assert calls, f"{func} {kw}: the fast path was not taken"
        calls.clear()
        with fsp.use_backend(FAST):  # the general path
            want = _call(func, x, **kw)
        assert not calls
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        out = np.full_like(x, 7.0)
        assert _call(func, x, out=out, **kw) is out
        assert calls
        calls.clear()
        np.testing.assert_array_equal(out, want)
        forced = _call(func, x, backend=FAST, **kw)  # forcing the backend it would choose
        assert calls == [FUNCS.index(func)]
        calls.clear()
        np.testing.assert_array_equal(forced, want)


def test_largest_automatic_size_is_taken(calls):
    limit = _dispatch.fast_auto_limit() if FAST == "cython" else _dispatch.PARALLEL_MIN_SIZE
    x = np.linspace(-30, 30, limit - 1)
    got = fsp.softplus(x)
    assert calls == [0]
    with fsp.use_backend(FAST):
        np.testing.assert_array_equal(got, fsp.softplus(x))


def test_in_place_and_overlapping_out(calls):
    x = np.linspace(-5, 5, 101)
    with fsp.use_backend(FAST):
        want = fsp.softplus(x)
    y = x.copy()
    assert fsp.softplus(y, out=y) is y and calls  # out is the input: allowed, in place
    np.testing.assert_array_equal(y, want)
    calls.clear()
    a = np.linspace(-5, 5, 102)
    with fsp.use_backend(FAST):
        want = fsp.softplus(a[:-1].copy())
    fsp.softplus(a[:-1], out=a[1:])  # partial overlap: the general path reads from a copy
    np.testing.assert_array_equal(a[1:], want)
    assert not calls
    g, x = np.linspace(-2, 2, 101), np.linspace(-5, 5, 101)
    with fsp.use_backend(FAST):
        want = fsp.softplus_backward(g, x)
    assert fsp.softplus_backward(g, x, out=g) is g and calls == [2]  # out is grad_output
    np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("out,exc", [
    (np.empty(8, np.float32), TypeError),    # float64 input, float32 out
    (np.empty(9), ValueError),               # wrong shape
    ("readonly", ValueError),
])
def test_rejected_out_raises_and_writes_nothing(calls, out, exc):
    x = np.linspace(-1, 1, 8)
    if isinstance(out, str):
        out = np.zeros(8)
        out.flags.writeable = False
    before = out.copy()
    with pytest.raises(exc):
        fsp.softplus(x, out=out)
    np.testing.assert_array_equal(out, before)
    assert not calls and calls.declined == 1  # the fast path declined; the general path raised


def test_steps_aside(calls):
    x = np.linspace(-3, 3, 100, dtype=np.float32)
    fsp.softplus(x, beta=2.0)
    fsp.softplus(x, threshold=np.float32(20))       # not a Python float
    fsp.softplus(x[::2])                            # not contiguous
    fsp.softplus(x.astype(x.dtype.newbyteorder("S")))
    fsp.softplus(np.float32(1.0))                   # 0-d: a scalar comes back
    if FAST == "cython":  # from there the automatic choice may be numba or threads
        fsp.softplus(np.zeros(_dispatch.fast_auto_limit(), np.float32))
    fsp.softplus(np.zeros(_dispatch.PARALLEL_MIN_SIZE, np.float32))  # threads
    fsp.softplus(np.zeros(_dispatch.PARALLEL_MIN_SIZE, np.float32), backend=FAST)
    fsp.softplus(x, backend="numpy")
    with fsp.use_backend(FAST):
        fsp.softplus(x)
    # (numba, forced, is served: cython's fast path hands it to numba's, tested below)
    with fsp.use_backend("numpy"):
        fsp.softplus(x)
    fsp.set_backend("numpy")
    fsp.softplus(x)
    fsp.set_backend(None)
    assert not calls
    with pytest.raises(ValueError, match="threshold"):
        fsp.softplus(x, threshold=float("nan"))
    assert not calls


@pytest.mark.skipif(FAST != "cython" or "numba" not in fsp.available_backends(),
                    reason="needs both compiled backends")
def test_calls_forced_onto_numba_take_numbas_fast_path(calls, monkeypatch):
    """backend="numba" and set_backend("numba"): cython's fast path hands small plain calls to
    numba's, which computes them (its kernel table fills) as the general path would."""
    from fastsoftplus import _numba
    monkeypatch.setattr(_numba, "_fast_kernels", {})
    x = np.linspace(-30, 30, 1000, dtype=np.float32)
    with fsp.use_backend("numba"):  # the general path
        want = fsp.softplus_grad(x)
    assert not calls and not _numba._fast_kernels
    np.testing.assert_array_equal(fsp.softplus_grad(x, backend="numba"), want)
    assert calls == [1] and list(_numba._fast_kernels) == [2]  # grad, float32
    fsp.set_backend("numba")
    try:
        np.testing.assert_array_equal(fsp.softplus_grad(x), want)
        fsp.softplus_grad(np.zeros(_dispatch.PARALLEL_MIN_SIZE))  # threads: the general path
    finally:
        fsp.set_backend(None)
    assert calls == [1, 1]


def test_backward_grad_output_not_an_array(calls):
    x = np.linspace(-5, 5, 5)
    with pytest.raises(TypeError, match="grad_output"):
        fsp.softplus_backward(None, x)
    got = fsp.softplus_backward([1.0, 2.0, 3.0, 4.0, 5.0], x)  # a list: the general path
    assert not calls
    np.testing.assert_array_equal(got, fsp.softplus_backward(np.arange(1.0, 6.0), x))
    assert len(calls) == 1  # the ndarray call took the fast path


def test_many_threads_at_once(calls):
    """Several Python threads in the fast path at once (the loops release the GIL: cython's above
    500 elements, numba's always)."""
    import threading
    xs = [np.linspace(-10, 10, n) for n in (100, 600, 16000)]
    with fsp.use_backend(FAST):
        want = [fsp.softplus(x) for x in xs]
    bad = []

    def work():
        for _ in range(200):
            for x, w in zip(xs, want):
                if not np.array_equal(fsp.softplus(x), w):
                    bad.append(x.size)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad and len(calls) == 4 * 200 * 3


def test_follows_the_global_default(calls):
    """set_backend() is read on every call: the fast path steps aside while another default is
    set and serves again once the automatic choice is back."""
    x = np.linspace(-3, 3, 100)
    fsp.set_backend("numpy")
    fsp.softplus(x)
    assert not calls
    fsp.set_backend(FAST)  # the fast path's own backend: served, as backend=FAST is
    fsp.softplus(x)
    assert calls == [0]
    fsp.softplus(np.zeros(_dispatch.PARALLEL_MIN_SIZE))  # threads: the general path
    assert calls == [0]
    fsp.set_backend(None)
    fsp.softplus(x)
    assert calls == [0, 0]


def test_global_default_from_the_environment():
    """FASTSOFTPLUS_BACKEND naming the fast path's backend: plain small calls take the fast path,
    although the automatic choice is never consulted."""
    import os
    import subprocess
    import sys
    code = ("import numpy as np, fastsoftplus as f\n"
            "from fastsoftplus import _api, _dispatch\n"
            "x = np.linspace(-3, 3, 1000)\n"
            "f.softplus(x, beta=2.0)  # the general path: loads the backend\n"
            "real, seen = _api._FAST, []\n"
            "_api._FAST = lambda *a: seen.append(real(*a)) or seen[-1]\n"
            "y = f.softplus(x)\n"
            "print(len(seen), seen[0] is y, _dispatch._auto_ready, f.get_backend())\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FASTSOFTPLUS_") or k == "FASTSOFTPLUS_DISABLE"}
    env["FASTSOFTPLUS_BACKEND"] = FAST
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "True", "False", FAST]
