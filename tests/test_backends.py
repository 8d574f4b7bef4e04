"""Every available backend against the reference, on every generated array, in ULPs.

Allowed distance from the reference (in representable steps; the reference itself is within
0.6 ULP of the exact value, see test_reference.py):

- 1 ULP: the contract (API.md: "every backend gives the same results to within 1 ULP").
- softplus_backward: 2. ``g * grad`` is rounded twice by a backend that first rounds ``grad``
  (<= 1 ULP) and then the product (0.5 ULP); the reference rounds once.
- beta != 1: plus 1 and plus ``kappa`` (``arrays.kappa``), the relative condition number of the
  function with respect to ``z = beta*x``. The reference forms ``beta*x`` exactly; a backend that
  rounds it (relative error 2**-p, what PyTorch does) moves the result by up to ``kappa`` ULPs
  (more where z is subnormal: fewer significant bits), and rounds once more when it divides by
  beta. ``kappa`` is <= 1 for softplus at z >= 0 but grows like |z| where the result is ~exp(z)
  (z very negative: e.g. 700 ULP at z = -700 in float64) and without bound near the inverse's
  root z = ln 2. With beta == 1, z = x is exact and no such allowance is made.
- float16: computed in float32 and rounded, so 1 float16 ULP (the float32 allowance scaled by
  2**-13 is below a step).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastsoftplus as fsp
from fastsoftplus import _reference as R

import arrays

CASES = arrays.cases(large=True)
PARAMS = [(1.0, 20.0), (1.0, math.inf), (1.0, 1.0), (0.5, 20.0), (2.0, math.inf), (10.0, 20.0),
          (2.0, 1.0), (0.5, math.inf), (10.0, 1.0)]
FUNCS = arrays.FUNCS


def _compute_dtype(dt: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dt.kind in "biu" else dt.newbyteorder("=")


def allowed_ulps(func: str, x: np.ndarray, beta: float, out_dtype: np.dtype) -> np.ndarray:
    """The allowance described in the module docstring, per element of ``x``."""
    base = 2.0 if func == "softplus_backward" else 1.0
    if beta == 1.0 or out_dtype == np.float16:
        return np.asarray(base)
    cdt = np.dtype(np.float32) if out_dtype == np.float32 else np.dtype(np.float64)
    with np.errstate(all="ignore"):
        z = np.asarray(x, np.float64) * float(cdt.type(beta))
        # the relative rounding error of z in the backend's precision, in units of eps: <= 1 for
        # normal z, far more for a subnormal z (its few significant bits)
        zc = np.abs(np.asarray(x, cdt) * cdt.type(beta))
        rel = np.where(zc > 0, np.spacing(zc) / (zc * np.finfo(cdt).eps), 1.0)
        extra = np.nan_to_num(arrays.kappa(func, z) * rel, nan=np.inf)
    # + 1: a backend computing (max(z, 0) + log1p(exp(-|z|))) / beta rounds the division too
    return base + 1.0 + extra


def _grad_output(x: np.ndarray, rng) -> np.ndarray:
    """A grad_output of x's shape with ordinary values and a few specials."""
    g = rng.standard_normal(x.shape) * 3
    if g.size > 10:
        g.flat[:4] = [0.0, -0.0, np.inf, np.nan]
    return g.astype(_compute_dtype(x.dtype) if x.dtype.kind == "f" else np.float64)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("beta,threshold", PARAMS)
def test_backend_matches_reference(backend, func, beta, threshold):
    rng = np.random.default_rng(7)
    for case in CASES:
        x = case.array
        if case.name.endswith("-large") and (beta, threshold) not in [(1.0, 20.0), (2.0, math.inf)]:
            continue  # the large arrays exercise the threaded paths; two parameter pairs suffice
        xin = np.asarray(x, _compute_dtype(x.dtype))  # what the oracle sees
        if func == "softplus_backward":
            g = _grad_output(x, rng)
            got = fsp.softplus_backward(g, x, beta, threshold, backend=backend)
            want = R.evaluate(func, np.asarray(g, xin.dtype), xin, beta=beta, threshold=threshold)
            inputs = {"g": g, "x": x}
        else:
            got = getattr(fsp, func)(x, beta, threshold, backend=backend)
            want = R.evaluate(func, xin, beta=beta, threshold=threshold)
            inputs = {"x": x}
        want = want.astype(_compute_dtype(x.dtype))
        got = np.asarray(got)
        assert got.dtype == want.dtype, f"{case.name}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == x.shape
        arrays.assert_ulp(got, want, allowed_ulps(func, xin, beta, want.dtype), inputs=inputs,
                          what=f"{backend} {func} beta={beta} threshold={threshold} on {case.name}")


@pytest.mark.parametrize("func", FUNCS)
def test_backend_all_thread_counts(backend, func):
    """Same results for every thread count (including more threads than cores)."""
    x = arrays.values(np.float32, 300_001, np.random.default_rng(3))
    args = (x[::-1], x) if func == "softplus_backward" else (x,)
    ref = getattr(fsp, func)(*args, 2.0, 20.0, backend=backend)
    for n in (1, 2, 3, 8):
        fsp.set_num_threads(n)
        got = getattr(fsp, func)(*args, 2.0, 20.0, backend=backend)
        np.testing.assert_array_equal(got, ref, err_msg=f"{n} threads")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backend_in_place_and_broadcast(backend, dtype):
    rng = np.random.default_rng(11)
    x = arrays.values(dtype, 5000, rng).reshape(50, 100)
    want = R.evaluate("softplus", x, beta=2.0, threshold=20.0)
    y = x.copy()
    assert fsp.softplus(y, 2.0, out=y, backend=backend) is y
    arrays.assert_ulp(y, want, 1, what=f"{backend} in place")
    # in place on a strided view, leaving the rest untouched
    z = x.copy()
    v = z[::2, ::-3]
    fsp.softplus(v, 2.0, out=v, backend=backend)
    arrays.assert_ulp(v, want[::2, ::-3], 1, what=f"{backend} in place strided")
    np.testing.assert_array_equal(z[1::2], x[1::2])
    # backward with grad_output broadcast along rows, and a scalar grad_output
    g = rng.standard_normal(100).astype(dtype)
    got = fsp.softplus_backward(g, x, backend=backend)
    arrays.assert_ulp(got, R.evaluate("softplus_backward", np.broadcast_to(g, x.shape), x, threshold=20.0), 2,
                      what=f"{backend} backward broadcast")
    got = fsp.softplus_backward(2.0, x, backend=backend)
    assert got.dtype == dtype
    arrays.assert_ulp(got, R.evaluate("softplus_backward", np.full(x.shape, 2.0, dtype), x, threshold=20.0), 2,
                      what=f"{backend} backward scalar g")


def test_backend_info(backend):
    from fastsoftplus import _dispatch
    mod = _dispatch.backend_module(backend)
    assert mod.NAME == backend
    info = mod.info()
    assert isinstance(info, dict) and all(isinstance(k, str) for k in info)
