"""Every rule of API.md, through the dispatcher and for each backend: inputs, dtypes, parameters,
``out``, errors and their messages, the dispatcher and its environment variables, threads,
``__array_ufunc__`` objects."""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
import pickle
import subprocess
import sys
import threading
from fractions import Fraction

import numpy as np
import pytest

import fastsoftplus as fsp
from fastsoftplus import _dispatch
from fastsoftplus import _reference as R

import arrays

FUNCS1 = ("softplus", "softplus_grad", "softplus_inverse")  # one-input functions


def call(func, x, *args, **kw):
    """Call a public function; softplus_backward gets grad_output = 1."""
    if func == "softplus_backward":
        return fsp.softplus_backward(np.ones_like(np.asarray(x), dtype=np.float64)
                                     if np.asarray(x).dtype.kind in "biuc" else np.ones_like(x), x, *args, **kw)
    return getattr(fsp, func)(x, *args, **kw)


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with extra environment variables."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOFTPLUS_")}
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          timeout=300)


# --- the public surface --------------------------------------------------------------------------

def test_public_names():
    names = {"softplus", "softplus_grad", "softplus_backward", "softplus_inverse",
             "available_backends", "get_backend", "set_backend", "use_backend",
             "set_num_threads", "get_num_threads", "explain", "BackendUnavailableError"}
    assert names <= set(fsp.__all__)
    for n in fsp.__all__:
        assert hasattr(fsp, n), n
    assert issubclass(fsp.BackendUnavailableError, RuntimeError)
    assert fsp.__version__ == "0.1.0"


def test_import_is_lazy():
    r = run_python("import sys, fastsoftplus; print('numba' in sys.modules, "
                   "any(m.startswith('fastsoftplus._numba') or m.startswith('fastsoftplus._cython') "
                   "for m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


# --- inputs and dtypes ---------------------------------------------------------------------------

@pytest.mark.parametrize("func", arrays.FUNCS)
def test_dtypes(backend, func):
    for dt, want in [(np.float32, np.float32), (np.float64, np.float64), (np.float16, np.float16),
                     (np.bool_, np.float64), (np.int8, np.float64), (np.uint8, np.float64),
                     (np.int32, np.float64), (np.int64, np.float64), (np.uint64, np.float64)]:
        x = np.array([0, 1, 2, 1], dtype=dt)
        y = call(func, x, backend=backend)
        assert y.dtype == want, (dt, y.dtype)
        assert y.shape == x.shape


def test_float16_is_computed_in_float32(backend):
    x = arrays.values(np.float16, 2000, np.random.default_rng(1))
    for func in FUNCS1:
        got = getattr(fsp, func)(x, 2.0, backend=backend)
        want = R.evaluate(func, x.astype(np.float32), beta=2.0, threshold=20.0).astype(np.float16)
        arrays.assert_ulp(got, want, 1, inputs={"x": x}, what=f"{backend} {func} float16")


def test_integers_and_bool_equal_float64(backend):
    x = np.array([-5, 0, 1, 7, 100], np.int32)
    np.testing.assert_array_equal(fsp.softplus(x, backend=backend),
                                  fsp.softplus(x.astype(np.float64), backend=backend))
    np.testing.assert_array_equal(fsp.softplus(np.array([True, False]), backend=backend),
                                  fsp.softplus(np.array([1.0, 0.0]), backend=backend))


@pytest.mark.parametrize("bad", [
    np.array([1 + 2j]), np.array([1], np.complex64), np.array([1.0], object), np.array(["a"]),
    np.array([b"a"]), np.array(["2020-01-01"], "datetime64[D]"), np.array([1], "timedelta64[s]"),
    np.zeros(2, dtype=[("a", "f8")]), np.zeros(2, "V8"), np.array([1.0], np.longdouble),
])
def test_unsupported_dtype_raises_typeerror_naming_it(bad):
    if bad.dtype == np.longdouble and np.dtype(np.longdouble) == np.float64:
        pytest.skip("longdouble is float64 here")
    for func in arrays.FUNCS:
        with pytest.raises(TypeError, match=r"dtype") as ei:
            if func == "softplus_backward":
                fsp.softplus_backward(1.0, bad)
            else:
                getattr(fsp, func)(bad)
        assert str(bad.dtype) in str(ei.value)
    with pytest.raises(TypeError, match="grad_output"):
        fsp.softplus_backward(bad, np.ones(bad.shape))
    with pytest.raises(TypeError, match=r"\by\b"):
        fsp.softplus_inverse(bad)


def test_complex_python_scalar_and_object_list():
    with pytest.raises(TypeError, match="complex128"):
        fsp.softplus(1j)
    with pytest.raises(TypeError, match="object"):
        fsp.softplus([1.0, None])


def test_array_likes_and_layouts(backend):
    for case in arrays.cases():
        x = case.array
        for func in FUNCS1:
            y = getattr(fsp, func)(x, backend=backend)
            assert np.shape(y) == x.shape, case.name
            want = getattr(fsp, func)(np.array(x, dtype=np.asarray(y).dtype), backend="numpy")
            arrays.assert_ulp(y, want, 1 if func != "softplus_backward" else 2,
                              what=f"{backend} {func} {case.name}")
    assert fsp.softplus([[0.0, 1.0], [2.0, 3.0]], backend=backend).shape == (2, 2)
    assert fsp.softplus((0, 1), backend=backend).dtype == np.float64


def test_scalar_in_numpy_scalar_out(backend):
    for func in FUNCS1:
        f = getattr(fsp, func)
        for x, t in [(1.0, np.float64), (1, np.float64), (True, np.float64),
                     (np.float32(1.0), np.float32), (np.float16(1.0), np.float16),
                     (np.float64(1.0), np.float64), (np.int8(1), np.float64),
                     (np.array(1.0), np.float64), (np.array(1.0, np.float32), np.float32)]:
            y = f(x, backend=backend)
            assert type(y) is t, (func, x, type(y))
    y = fsp.softplus_backward(2.0, 0.0, backend=backend)
    assert type(y) is np.float64 and y == 1.0
    out = np.empty((), np.float64)
    assert fsp.softplus(0.0, out=out, backend=backend) is out
    assert out[()] == math.log(2)


def test_memmap_input(tmp_path, backend):
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(100, 3))
    mm[:] = np.linspace(-10, 10, 300).reshape(100, 3)
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=(100, 3))
    y = fsp.softplus(ro, backend=backend)
    assert type(y) is np.ndarray and y.dtype == np.float32
    np.testing.assert_array_equal(y, fsp.softplus(np.array(ro), backend=backend))


def test_byteswapped_input(backend):
    x = np.linspace(-30, 30, 101)
    for func in FUNCS1:
        y = getattr(fsp, func)(x.astype(">f8" if sys.byteorder == "little" else "<f8"), backend=backend)
        assert y.dtype == np.float64 and y.dtype.isnative
        np.testing.assert_array_equal(y, getattr(fsp, func)(x, backend=backend))


def test_zero_size(backend):
    for shape in [(0,), (3, 0), (0, 4, 2)]:
        for func in arrays.FUNCS:
            x = np.empty(shape, np.float32)
            y = call(func, x, backend=backend)
            assert y.shape == shape and y.dtype == np.float32
            out = np.empty(shape, np.float32)
            assert call(func, x, out=out, backend=backend) is out


# --- values --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_special_values(backend, dtype):
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype)
    for beta in (1.0, 2.5):
        ln2 = dtype(math.log(2) / dtype(beta) if dtype != np.float16 else math.log(2) / beta)
        sp = fsp.softplus(x, beta, backend=backend)
        np.testing.assert_array_equal(sp[:3], np.array([np.nan, np.inf, 0.0], dtype))
        assert arrays.ulp_distance(sp[3:], np.array([ln2, ln2], dtype)).max() <= 1
        gr = fsp.softplus_grad(x, beta, backend=backend)
        np.testing.assert_array_equal(gr, np.array([np.nan, 1.0, 0.0, 0.5, 0.5], dtype))
        inv = fsp.softplus_inverse(x, beta, backend=backend)
        np.testing.assert_array_equal(inv, np.array([np.nan, np.inf, np.nan, np.nan, np.nan], dtype))
        for thr in (None, math.inf):
            np.testing.assert_array_equal(fsp.softplus(x[:3], beta, thr, backend=backend),
                                          np.array([np.nan, np.inf, 0.0], dtype))
            np.testing.assert_array_equal(fsp.softplus_grad(x[:3], beta, thr, backend=backend),
                                          np.array([np.nan, 1.0, 0.0], dtype))


def test_exact_without_threshold(backend):
    assert fsp.softplus(1000.0, threshold=None, backend=backend) == 1000.0
    assert fsp.softplus(-1000.0, threshold=None, backend=backend) == 0.0
    assert fsp.softplus(np.float32(1000), threshold=None, backend=backend) == np.float32(1000)
    assert fsp.softplus(1e308, threshold=None, backend=backend) == 1e308
    assert fsp.softplus_grad(1000.0, threshold=None, backend=backend) == 1.0
    assert fsp.softplus_inverse(1000.0, threshold=None, backend=backend) == 1000.0
    big = np.array([1e30, 3e38], np.float32)
    np.testing.assert_array_equal(fsp.softplus(big, threshold=None, backend=backend), big)


def test_threshold_semantics(backend):
    x = np.array([19.0, 20.0, np.nextafter(20.0, 21.0), 25.0])
    y = fsp.softplus(x, backend=backend)  # default threshold 20, strict >
    assert y[0] > 19.0 and y[1] > 20.0
    assert y[2] == x[2] and y[3] == x[3]
    g = fsp.softplus_grad(x, backend=backend)
    assert g[0] < 1.0 and g[2] == 1.0
    # beta*x is compared: beta=2, threshold=20 cuts at x > 10
    y = fsp.softplus(np.array([9.0, 10.5]), 2.0, backend=backend)
    assert y[1] == 10.5 and y[0] != 9.0
    # None and inf are the same thing
    np.testing.assert_array_equal(fsp.softplus(x, threshold=None, backend=backend),
                                  fsp.softplus(x, threshold=math.inf, backend=backend))
    # negative threshold: the linear branch for anything above it
    assert fsp.softplus(-1.0, 1.0, -5.0, backend=backend) == -1.0
    # inverse applies the same test to beta*y
    assert fsp.softplus_inverse(25.0, backend=backend) == 25.0


def test_inverse_nan_for_nonpositive(backend):
    y = fsp.softplus_inverse(np.array([-1.0, -0.0, 0.0, -np.inf, 1e-300]), backend=backend)
    assert np.isnan(y[:4]).all() and np.isfinite(y[4])


# --- beta and threshold ----------------------------------------------------------------------

@pytest.mark.parametrize("beta", [2, 2.0, np.float32(2), np.float64(2), np.int64(2), Fraction(2),
                                  np.array(2.0), np.array(2, np.int8)])
def test_beta_accepts_real_numbers(beta):
    assert fsp.softplus(1.0, beta, backend="numpy") == fsp.softplus(1.0, 2.0, backend="numpy")


@pytest.mark.parametrize("beta,exc,msg", [
    (0.0, ValueError, "> 0"), (-1.0, ValueError, "> 0"), (-0.0, ValueError, "> 0"),
    (math.nan, ValueError, "NaN"), (math.inf, ValueError, "finite"), (-math.inf, ValueError, "> 0"),
    (10 ** 400, ValueError, "finite"), (np.float32("nan"), ValueError, "NaN"),
    ("1", TypeError, "real number"), (None, TypeError, "real number"), ([1.0], TypeError, "real"),
    (1j, TypeError, "real number"), (True, TypeError, "bool"), (np.True_, TypeError, "bool"),
    (np.array([1.0, 2.0]), TypeError, "shape"),
])
def test_beta_rejected(beta, exc, msg):
    for func in arrays.FUNCS:
        with pytest.raises(exc, match=msg) as ei:
            call(func, np.ones(3), beta)
        assert "beta" in str(ei.value)


def test_beta_must_fit_float32_for_float32_input():
    x = np.ones(3, np.float32)
    for beta in (1e39, 1e300, 1e-46, 1e-300):
        with pytest.raises(ValueError, match="beta.*float32"):
            fsp.softplus(x, beta)
        fsp.softplus(x.astype(np.float64), beta)  # fine in float64
    with pytest.raises(ValueError, match="beta"):
        fsp.softplus(np.ones(2, np.float16), 1e300)  # float16 is computed in float32
    fsp.softplus(x, 3e38)
    fsp.softplus(x, 1e-44)


@pytest.mark.parametrize("threshold", [None, 20, 20.0, -5, math.inf, -math.inf, np.float32(3),
                                       Fraction(1, 3), 10 ** 400, -10 ** 400])
def test_threshold_accepts_real_numbers_and_none(threshold):
    fsp.softplus(np.linspace(-5, 5, 11), 1.0, threshold, backend="numpy")


@pytest.mark.parametrize("threshold,exc,msg", [
    (math.nan, ValueError, "NaN"), (np.float64("nan"), ValueError, "NaN"),
    ("20", TypeError, "real number"), (True, TypeError, "bool"), (1j, TypeError, "real number"),
    ([20.0], TypeError, "real number"),
])
def test_threshold_rejected(threshold, exc, msg):
    for func in arrays.FUNCS:
        with pytest.raises(exc, match=msg) as ei:
            call(func, np.ones(3), 1.0, threshold)
        assert "threshold" in str(ei.value)


def test_huge_threshold_float32_no_warning(backend, recwarn):
    x = np.linspace(-5, 5, 11, dtype=np.float32)
    with np.errstate(all="raise"):
        y = fsp.softplus(x, 1.0, 1e300, backend=backend)
        np.testing.assert_array_equal(y, fsp.softplus(x, 1.0, None, backend=backend))
        y = fsp.softplus(x, 1.0, -1e300, backend=backend)
        np.testing.assert_array_equal(y, x)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_no_warnings_on_special_inputs(backend):
    x = arrays.values(np.float64, 3000, np.random.default_rng(2))
    with np.errstate(all="raise"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for func in arrays.FUNCS:
                for dt in (np.float16, np.float32, np.float64):
                    with np.errstate(all="ignore"):
                        xd = x.astype(dt)
                    call(func, xd, 3.0, backend=backend)
                    call(func, xd, 0.5, None, backend=backend)


# --- out -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("func", arrays.FUNCS)
def test_out_returned_and_in_place(backend, func):
    x = np.linspace(-30, 30, 1001)
    want = call(func, x, backend=backend)
    out = np.empty_like(x)
    assert call(func, x, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, want)
    y = x.copy()
    if func == "softplus_backward":
        assert fsp.softplus_backward(np.ones_like(y), y, out=y, backend=backend) is y
    else:
        assert getattr(fsp, func)(y, out=y, backend=backend) is y
    np.testing.assert_array_equal(y, want)


def test_out_strided_and_float16(backend):
    x = np.linspace(-10, 10, 50, dtype=np.float32)
    buf = np.zeros((50, 3), np.float32)
    fsp.softplus(x, out=buf[:, 1], backend=backend)
    np.testing.assert_array_equal(buf[:, 1], fsp.softplus(x, backend=backend))
    assert not buf[:, 0].any() and not buf[:, 2].any()
    h = x.astype(np.float16)
    out = np.empty(50, np.float16)
    assert fsp.softplus(h, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, fsp.softplus(h, backend=backend))
    sw = np.empty(50, np.dtype(np.float32).newbyteorder("S"))  # non-native out
    fsp.softplus(x, out=sw, backend=backend)
    np.testing.assert_array_equal(sw, fsp.softplus(x, backend=backend))


def test_out_partially_overlapping_input(backend):
    a = np.linspace(-5, 5, 101)
    want = fsp.softplus(a[:-1].copy(), backend=backend)
    fsp.softplus(a[:-1], out=a[1:], backend=backend)  # out starts one element later
    np.testing.assert_array_equal(a[1:], want)
    b = np.linspace(-5, 5, 100)
    want = fsp.softplus(b[::-1].copy(), backend=backend)
    fsp.softplus(b[::-1], out=b, backend=backend)  # reversed view of itself
    np.testing.assert_array_equal(b, want)


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(out=[0.0] * 4), TypeError, "out must be a numpy.ndarray"),
    (dict(out=np.empty(4, np.float32)), TypeError, "out has dtype float32"),
    (dict(out=np.empty(4, np.int64)), TypeError, "out has dtype int64"),
    (dict(out=np.empty(4, np.complex128)), TypeError, "out has dtype"),
    (dict(out=np.empty(5)), ValueError, "out has shape"),
    (dict(out=np.empty((4, 1))), ValueError, "out has shape"),
])
def test_out_rejected(kwargs, exc, msg):
    for func in arrays.FUNCS:
        with pytest.raises(exc, match=msg):
            call(func, np.ones(4), **kwargs)


def test_out_read_only():
    out = np.zeros(4)
    out.flags.writeable = False
    for func in arrays.FUNCS:
        with pytest.raises(ValueError, match="read-only"):
            call(func, np.ones(4), out=out)


def test_out_int_input_needs_float64():
    with pytest.raises(TypeError, match="float64"):
        fsp.softplus(np.arange(3), out=np.empty(3, np.float32))
    out = np.empty(3)
    assert fsp.softplus(np.arange(3), out=out) is out


def test_nothing_written_to_out_on_rejected_call(monkeypatch):
    monkeypatch.setitem(_dispatch.BACKENDS, "broken", "fastsoftplus._no_such_backend")
    x = np.linspace(-3, 3, 8)
    out = np.full(8, 42.0)
    bad_calls = [
        lambda: fsp.softplus(x, 0.0, out=out),
        lambda: fsp.softplus(x, "2", out=out),
        lambda: fsp.softplus(x, 1.0, math.nan, out=out),
        lambda: fsp.softplus(x.astype(complex), out=out),
        lambda: fsp.softplus(x, out=out, backend="nope"),
        lambda: fsp.softplus(x, out=out, backend="broken"),
        lambda: fsp.softplus_backward(np.ones(3), x, out=out),
        lambda: fsp.softplus_backward(np.ones(8, complex), x, out=out),
        lambda: fsp.softplus(x.astype(np.float32), 1e300, out=out.astype(np.float32)),
    ]
    for i, bad in enumerate(bad_calls):
        with pytest.raises((TypeError, ValueError, RuntimeError)):
            bad()
        assert (out == 42.0).all(), f"call {i} wrote to out"


# --- softplus_backward ---------------------------------------------------------------------------

def test_backward_broadcasting_and_promotion(backend):
    g = np.arange(3.0).reshape(3, 1)
    x = np.linspace(-2, 2, 4).reshape(1, 4)
    y = fsp.softplus_backward(g, x, backend=backend)
    assert y.shape == (3, 4)
    want = g * fsp.softplus_grad(x, backend="numpy")
    arrays.assert_ulp(y, want, 2, what="broadcast backward")
    x32 = x.astype(np.float32)
    assert fsp.softplus_backward(g, x32, backend=backend).dtype == np.float64
    assert fsp.softplus_backward(2.0, x32, backend=backend).dtype == np.float32  # weak scalar
    assert fsp.softplus_backward(g.astype(np.float32), x32, backend=backend).dtype == np.float32
    assert fsp.softplus_backward(np.int64(2), x32, backend=backend).dtype == np.float64
    assert fsp.softplus_backward(g.astype(np.float16), x.astype(np.float16), backend=backend).dtype == np.float16
    assert fsp.softplus_backward(np.ones(4, bool), x32, backend=backend).dtype == np.float32
    assert fsp.softplus_backward(np.ones(4, np.int32), np.arange(4), backend=backend).dtype == np.float64
    out = np.empty((3, 4))
    assert fsp.softplus_backward(g, x, out=out, backend=backend) is out


def test_backward_shape_mismatch_names_both():
    with pytest.raises(ValueError, match=r"grad_output and x.*\(3,\).*\(4,\)"):
        fsp.softplus_backward(np.ones(3), np.ones(4))


def test_backward_equals_grad_times_g(backend):
    rng = np.random.default_rng(4)
    x = rng.uniform(-40, 40, 2000)
    g = rng.standard_normal(2000)
    arrays.assert_ulp(fsp.softplus_backward(g, x, 2.0, backend=backend),
                      R.evaluate("softplus_backward", g, x, beta=2.0, threshold=20.0),
                      2 if backend == "numpy" else arrays.kappa("softplus_grad", 2 * x) + 3)


# --- dispatcher ----------------------------------------------------------------------------------

def test_available_backends():
    av = fsp.available_backends()
    assert isinstance(av, tuple) and "numpy" in av
    assert set(av) <= {"cython", "numba", "numpy"}
    assert list(av) == [n for n in _dispatch.BACKENDS if n in av]  # preference order
    for name, reason in _dispatch.unavailable_reasons().items():
        assert name not in av and reason


def test_unknown_backend_lists_known_ones():
    for f in (lambda: fsp.softplus(1.0, backend="torch"), lambda: fsp.set_backend("torch"),
              lambda: fsp.use_backend("torch").__enter__()):
        with pytest.raises(ValueError, match="cython, numba, numpy"):
            f()
    with pytest.raises(TypeError, match="backend"):
        fsp.softplus(1.0, backend=3)


def test_unavailable_backend_gives_reason(monkeypatch):
    monkeypatch.setitem(_dispatch.BACKENDS, "broken", "fastsoftplus._no_such_backend")
    with pytest.raises(fsp.BackendUnavailableError) as ei:
        fsp.softplus(1.0, backend="broken")
    assert isinstance(ei.value, RuntimeError)
    assert ei.value.backend == "broken" and "not installed" in ei.value.reason
    assert ei.value.reason in str(ei.value)
    with pytest.raises(fsp.BackendUnavailableError):
        fsp.set_backend("broken")


def test_disable_env_var():
    r = run_python(
        "import fastsoftplus as f\n"
        "print(f.available_backends())\n"
        "try:\n    f.softplus(1.0, backend='numba')\n"
        "except f.BackendUnavailableError as e:\n    print('reason:', e.reason)\n",
        FASTSOFTPLUS_DISABLE="numba, cython")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "('numpy',)"
    assert lines[1] == "reason: disabled by FASTSOFTPLUS_DISABLE"


def test_backend_env_var():
    r = run_python("import fastsoftplus as f\nprint(f.get_backend())\nprint(f.explain([1.0]))",
                   FASTSOFTPLUS_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "numpy"
    assert "FASTSOFTPLUS_BACKEND" in r.stdout.splitlines()[1]
    r = run_python("import fastsoftplus as f\nf.softplus(1.0)", FASTSOFTPLUS_BACKEND="bogus")
    assert r.returncode != 0
    assert "FASTSOFTPLUS_BACKEND" in r.stderr and "known backends" in r.stderr


def test_set_get_use_backend(backend):
    default = os.environ.get("FASTSOFTPLUS_BACKEND") or None
    assert fsp.get_backend() == default
    fsp.set_backend(backend)
    assert fsp.get_backend() == backend
    assert fsp.explain([1.0]).startswith(f"{backend}: set_backend()")
    other = "numpy" if backend != "numpy" else fsp.available_backends()[0]
    with fsp.use_backend(other):
        assert fsp.get_backend() == other
        assert fsp.explain([1.0]).startswith(f"{other}: use_backend()")
        with fsp.use_backend(None):
            assert fsp.get_backend() is None
            assert "automatic" in fsp.explain([1.0])
        assert fsp.get_backend() == other
    assert fsp.get_backend() == backend
    with pytest.raises(ValueError):
        fsp.set_backend("nope")
    assert fsp.get_backend() == backend
    fsp.set_backend(None)
    assert fsp.get_backend() is None


def test_use_backend_is_local_to_the_thread():
    seen = {}
    inside, done = threading.Event(), threading.Event()

    def worker():
        with fsp.use_backend("numpy"):
            seen["worker"] = fsp.get_backend()
            inside.set()
            done.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(10)
    seen["main"] = fsp.get_backend()
    done.set()
    t.join()
    assert seen == {"worker": "numpy", "main": os.environ.get("FASTSOFTPLUS_BACKEND") or None}


def test_backend_argument_wins(monkeypatch):
    monkeypatch.setitem(_dispatch.BACKENDS, "broken", "fastsoftplus._no_such_backend")
    fsp.set_backend("numpy")
    with fsp.use_backend("numpy"):
        with pytest.raises(fsp.BackendUnavailableError):  # the argument, not the defaults
            fsp.softplus(1.0, backend="broken")


def test_explain():
    small = np.ones(10, np.float32)
    text = fsp.explain(small)
    auto = fsp.available_backends()[0]
    assert text.startswith(f"{auto}: automatic")
    assert "10 float32 elements" in text and "1 thread" in text
    # the threaded size of the backend the automatic choice takes (numba on the workqueue layer
    # starts threads later than PARALLEL_MIN_SIZE)
    n = max(_dispatch.parallel_min_size(b, np.dtype(np.float64)) for b in fsp.available_backends())
    big = np.ones(n)
    fsp.set_num_threads(2)
    assert "2 threads" in fsp.explain(big, "softplus_grad")
    assert "strided" in fsp.explain(big[::2])
    assert "computed as float32" in fsp.explain(np.ones(3, np.float16))
    assert "computed as float64" in fsp.explain([1, 2])
    with pytest.raises(ValueError, match="func"):
        fsp.explain(small, "relu")
    with pytest.raises(TypeError, match="complex"):
        fsp.explain([1j])



@pytest.mark.skipif(not {"cython", "numba"} <= set(fsp.available_backends()),
                    reason="the rule chooses between the two compiled backends")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_explain_threaded_calls_go_to_openmp(dtype):
    """Threaded calls go to cython's OpenMP loops where they can run threads, at every size;
    where they cannot (a forked child: simulated), to numba on tbb."""
    from fastsoftplus._cy import _ext
    fsp.set_num_threads(2)
    layer = _dispatch._numba_layer()
    without = "numba: automatic" if layer == "tbb" else "cython: automatic"  # cython, no threads
    for n in (_dispatch.PARALLEL_MIN_SIZE, 10 ** 6, 10 ** 7):
        text = fsp.explain(np.zeros(n, dtype))
        if _ext.openmp:
            assert text.startswith("cython: automatic") and "cython's OpenMP loops" in text, text
        else:
            assert text.startswith(without) and "cannot run threads" in text, text
        assert "2 threads" in text
    assert "OpenMP" not in fsp.explain(np.zeros(_dispatch.PARALLEL_MIN_SIZE - 1, dtype))  # serial
    _ext._set_serial_only(True)  # as in a forked child
    try:
        text = fsp.explain(np.zeros(10 ** 6, dtype))
        assert text.startswith(without) and "cannot run threads" in text, text
    finally:
        _ext._set_serial_only(False)
    with fsp.use_backend("numba"):  # a forced backend is not overridden
        assert fsp.explain(np.zeros(10 ** 6, dtype)).startswith("numba")


# --- threads -------------------------------------------------------------------------------------

def test_num_threads():
    default = os.environ.get("FASTSOFTPLUS_NUM_THREADS")
    if default is None:
        assert fsp.get_num_threads() == len(os.sched_getaffinity(0))
    for n in (1, 3, 64, np.int64(2)):
        fsp.set_num_threads(n)
        assert fsp.get_num_threads() == n
    for bad, exc in [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError),
                     (True, TypeError), (None, TypeError)]:
        with pytest.raises(exc, match="n must be an integer >= 1"):
            fsp.set_num_threads(bad)
    assert fsp.get_num_threads() == 2


def test_num_threads_env_var():
    r = run_python("import fastsoftplus as f; print(f.get_num_threads())", FASTSOFTPLUS_NUM_THREADS="3")
    assert r.returncode == 0 and r.stdout.strip() == "3", r.stderr
    r = run_python("import fastsoftplus as f; f.get_num_threads()", FASTSOFTPLUS_NUM_THREADS="zero")
    assert r.returncode != 0 and "FASTSOFTPLUS_NUM_THREADS" in r.stderr


def test_concurrent_calls_from_many_threads(backend):
    rng = np.random.default_rng(9)
    xs = [rng.uniform(-30, 30, n).astype(dt) for n in (1000, 100_000, 70_001)
          for dt in (np.float32, np.float64)] * 4
    want = [fsp.softplus(x, 2.0, backend=backend) for x in xs]
    fsp.set_num_threads(2)
    with cf.ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda x: fsp.softplus(x, 2.0, backend=backend), xs))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# --- objects overriding __array_ufunc__ ------------------------------------------------------

class Wrapped:
    """A minimal duck array: records the ufunc call and wraps the result."""

    def __init__(self, a):
        self.a = np.asarray(a)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        Wrapped.last = (ufunc, method, len(inputs), kwargs)
        raw = [i.a if isinstance(i, Wrapped) else i for i in inputs]
        return Wrapped(getattr(ufunc, method)(*raw, **kwargs))


@pytest.mark.parametrize("func", arrays.FUNCS)
def test_array_ufunc_objects_go_through_the_ufuncs(func):
    x = np.linspace(-3, 3, 7)
    w = call(func, Wrapped(x)) if func != "softplus_backward" else fsp.softplus_backward(2.0, Wrapped(x))
    assert isinstance(w, Wrapped)
    ufunc, method, nin, _ = Wrapped.last
    assert ufunc is getattr(fsp.ufuncs, func) and method == "__call__"
    assert nin == (4 if func == "softplus_backward" else 3)
    if func == "softplus_backward":
        want = fsp.softplus_backward(2.0, x)
    else:
        want = getattr(fsp, func)(x)
    arrays.assert_ulp(w.a, want, 1, what=func)
    assert "__array_ufunc__" in fsp.explain(Wrapped(x))


def test_array_ufunc_objects_params_checked_first():
    with pytest.raises(ValueError, match="beta"):
        fsp.softplus(Wrapped([1.0]), -1.0)
    with pytest.raises(ValueError, match="known backends"):
        fsp.softplus(Wrapped([1.0]), backend="nope")


def test_pandas_series():
    pd = pytest.importorskip("pandas")
    s = pd.Series([-1.0, 0.0, 2.0], index=["a", "b", "c"], name="v")
    r = fsp.softplus(s, 2.0)
    assert isinstance(r, pd.Series) and list(r.index) == ["a", "b", "c"] and r.name == "v"
    np.testing.assert_array_equal(r.to_numpy(), fsp.softplus(s.to_numpy(), 2.0))


def test_dask_array_stays_lazy():
    da = pytest.importorskip("dask.array")
    x = da.from_array(np.linspace(-30, 30, 1000, dtype=np.float32), chunks=250)
    y = fsp.softplus(x, 1.5, None)
    assert isinstance(y, da.Array) and y.dtype == np.float32
    g = fsp.softplus_backward(x, x)
    assert isinstance(g, da.Array)
    np.testing.assert_array_equal(y.compute(), fsp.softplus(x.compute(), 1.5, None))


def test_xarray_dataarray():
    xr = pytest.importorskip("xarray")
    a = xr.DataArray(np.linspace(-3, 3, 6).reshape(2, 3), dims=("t", "c"), coords={"t": [0, 1]})
    r = fsp.softplus_grad(a)
    assert isinstance(r, xr.DataArray) and r.dims == ("t", "c") and list(r.t.values) == [0, 1]
    np.testing.assert_array_equal(r.values, fsp.softplus_grad(a.values))


# --- fastsoftplus.ufuncs -------------------------------------------------------------------------

def test_ufuncs_are_real_ufuncs():
    for func in arrays.FUNCS:
        uf = getattr(fsp.ufuncs, func)
        assert isinstance(uf, np.ufunc)
        assert uf.nin == (4 if func == "softplus_backward" else 3) and uf.nout == 1
    x = np.linspace(-30, 30, 61, dtype=np.float32)
    y = fsp.ufuncs.softplus(x, 1.0, 20.0)
    assert y.dtype == np.float32
    arrays.assert_ulp(y, fsp.softplus(x), 1, what="ufunc softplus")
    out = np.zeros_like(x)
    fsp.ufuncs.softplus(x, 1.0, math.inf, out=out, where=x > 0)
    assert (out[x <= 0] == 0).all()
    arrays.assert_ulp(out[x > 0], fsp.softplus(x[x > 0], threshold=None), 1, what="where=")
    y64 = fsp.ufuncs.softplus_grad(x, 2.0, 20.0, dtype=np.float64)
    assert y64.dtype == np.float64
    b = fsp.ufuncs.softplus_backward(np.ones((2, 1), np.float32), x, 1.0, 20.0)
    assert b.shape == (2, 61)
    assert pickle.loads(pickle.dumps(fsp.ufuncs.softplus)) is fsp.ufuncs.softplus
