"""Mathematical properties, checked by hypothesis on every backend (float32 and float64).

Rounding slack: a backend is within 1 ULP of the exact value when beta == 1 (z = x exactly) and
within 2 ULPs (plus conditioning, see test_backends.py) when beta != 1, because it rounds
beta*x and divides by beta. A property that holds exactly in real arithmetic is therefore checked
with at most that slack, expressed in ULPs of the quantities involved, never a loose allclose.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastsoftplus as fsp  # noqa: E402

BACKENDS = fsp.available_backends()
DTYPES = [np.float32, np.float64]
BETAS = st.one_of(st.sampled_from([0.5, 1.0, 2.0, 10.0]), st.floats(0.01, 100.0))


def xs(dtype, lo=None, hi=None):
    """1-D finite arrays of ``dtype`` (subnormals included) in [lo, hi]."""
    width = 32 if dtype == np.float32 else 64
    if lo is not None:  # hypothesis wants bounds representable in the width: round inwards
        lo = float(np.nextafter(dtype(lo), dtype(np.inf)) if dtype(lo) < lo else dtype(lo))
    if hi is not None:
        hi = float(np.nextafter(dtype(hi), dtype(-np.inf)) if dtype(hi) > hi else dtype(hi))
    return hnp.arrays(dtype, st.integers(1, 64),
                      elements=st.floats(lo, hi, width=width, allow_nan=False, allow_infinity=False))


def slack(beta: float) -> int:
    return 1 if beta == 1.0 else 2


def up(a, k):
    """``a`` moved ``k`` representable steps towards +inf."""
    with np.errstate(over="ignore"):
        for _ in range(k):
            a = np.nextafter(a, np.inf)
    return a


def down(a, k):
    with np.errstate(over="ignore"):
        for _ in range(k):
            a = np.nextafter(a, -np.inf)
    return a


def qbeta(beta, dtype):
    """beta as the computation sees it (rounded to the input precision)."""
    return float(np.dtype(dtype).type(beta))


params = pytest.mark.parametrize("backend,dtype", [(b, d) for b in BACKENDS for d in DTYPES])


@params
@given(data=st.data(), beta=BETAS, threshold=st.sampled_from([None, 20.0, 1.0]))
def test_lower_bound(backend, dtype, data, beta, threshold):
    """softplus(x) >= max(x, 0) (a non-negative threshold keeps it true)."""
    x = data.draw(xs(dtype))
    y = fsp.softplus(x, beta, threshold, backend=backend)
    bound = np.maximum(x, dtype(0))
    assert np.all(y >= down(bound, slack(beta) - 1)), (x[y < bound], y[y < bound])


@params
@given(data=st.data(), beta=BETAS)
def test_upper_bound(backend, dtype, data, beta):
    """softplus(x) <= max(x, 0) + log(2)/beta, the bound itself rounded up."""
    x = data.draw(xs(dtype))
    y = fsp.softplus(x, beta, None, backend=backend)
    with np.errstate(over="ignore"):
        bound = (np.maximum(x, 0).astype(np.float64) + math.log(2) / qbeta(beta, dtype)).astype(dtype)
    assert np.all(y <= up(bound, slack(beta))), (x[y > bound], y[y > bound])


@params
@given(data=st.data(), beta=BETAS)
def test_monotone(backend, dtype, data, beta):
    """Non-decreasing in x (without threshold: the cut-off itself is a downward jump)."""
    x = np.sort(data.draw(xs(dtype)))
    y = fsp.softplus(x, beta, None, backend=backend)
    assert np.all(y[1:] >= down(y[:-1], slack(beta))), (x, y)
    g = fsp.softplus_grad(x, beta, None, backend=backend)
    assert np.all(g[1:] >= down(g[:-1], slack(beta)))


@params
@given(data=st.data(), beta=BETAS)
def test_odd_part_is_identity(backend, dtype, data, beta):
    """softplus(x) - softplus(-x) == x (exact identity without threshold)."""
    x = data.draw(xs(dtype, -1e4, 1e4))
    a = fsp.softplus(x, beta, None, backend=backend)
    b = fsp.softplus(-x, beta, None, backend=backend)
    err = np.abs(a.astype(np.longdouble) - b.astype(np.longdouble) - x.astype(np.longdouble))
    tol = slack(beta) * (np.spacing(a) + np.spacing(b)).astype(np.longdouble)
    assert np.all(err <= tol), (x[err > tol], a[err > tol], b[err > tol])


@params
@given(data=st.data(), beta=BETAS)
def test_grad_symmetry_and_range(backend, dtype, data, beta):
    """0 <= grad <= 1 and grad(x) + grad(-x) == 1."""
    x = data.draw(xs(dtype))
    g = fsp.softplus_grad(x, beta, None, backend=backend)
    h = fsp.softplus_grad(-x, beta, None, backend=backend)
    assert np.all((g >= 0) & (g <= 1))
    err = np.abs(g.astype(np.float64) + h.astype(np.float64) - 1)
    tol = slack(beta) * (np.spacing(g) + np.spacing(h)).astype(np.float64)
    assert np.all(err <= tol), (x[err > tol], g[err > tol], h[err > tol])


@params
@given(data=st.data(), beta=BETAS)
def test_inverse_of_softplus(backend, dtype, data, beta):
    """softplus_inverse(softplus(x)) == x, to within what the conditioning allows.

    y = softplus(x) carries <= 2 ULP(y); the inverse's slope is 1/sigmoid(z), so x comes back
    within 2*ULP(y)/sigmoid(z) + 2*ULP(x). Restricted to z >= -30, where y is far from
    underflow.
    """
    b = qbeta(beta, dtype)
    x = data.draw(xs(dtype, -30.0 / b, 1e6))
    y = fsp.softplus(x, beta, None, backend=backend)
    back = fsp.softplus_inverse(y, beta, None, backend=backend)
    z = x.astype(np.float64) * b
    sig = 1 / (1 + np.exp(-z))
    tol = 2 * slack(beta) * (np.spacing(y).astype(np.float64) / sig + np.abs(np.spacing(x)).astype(np.float64))
    err = np.abs(back.astype(np.float64) - x.astype(np.float64))
    assert np.all(err <= tol), (x[err > tol], y[err > tol], back[err > tol])


@params
@given(data=st.data(), beta=BETAS, threshold=st.sampled_from([None, 20.0]))
def test_inverse_domain(backend, dtype, data, beta, threshold):
    """NaN for y <= 0; below y for y > 0 (softplus(x) > x)."""
    y = data.draw(xs(dtype))
    r = fsp.softplus_inverse(y, beta, threshold, backend=backend)
    assert np.all(np.isnan(r[y <= 0]))
    pos = y > 0
    assert np.all(r[pos] <= up(y[pos], slack(beta) - 1))


@params
@given(data=st.data(), beta=BETAS)
def test_backward_is_g_times_grad(backend, dtype, data, beta):
    """softplus_backward(g, x) == g * softplus_grad(x) to within two roundings."""
    x = data.draw(xs(dtype))
    g = data.draw(hnp.arrays(dtype, x.shape, elements=st.floats(-1e3, 1e3, width=32)))
    r = fsp.softplus_backward(g, x, beta, 20.0, backend=backend)
    grad = fsp.softplus_grad(x, beta, 20.0, backend=backend)
    want = g.astype(np.float64) * grad.astype(np.float64)
    err = np.abs(r.astype(np.float64) - want)
    # r is rounded once from g*sigmoid; want carries the rounding of grad (|g| * ULP(grad) / 2,
    # large relative to want where grad is subnormal)
    tol = ((slack(beta) + 1) * np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
           + np.abs(g.astype(np.float64)) * np.spacing(grad).astype(np.float64))
    assert np.all(err <= tol), (x[err > tol], g[err > tol], r[err > tol])
