"""Other implementations as extra oracles, and regression cases known from them.

The regression cases are plain tests. The peers (PyTorch, SciPy, NumPy's logaddexp) are compared
in ULPs with the slack their own documented accuracy needs (~1.5 ULP for torch and logaddexp in
float32, see the project notes); torch is optional and skipped cleanly when missing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastsoftplus as fsp

import arrays

pytestmark = pytest.mark.peers


def _sample(dtype, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-40, 40, n), rng.uniform(-110, 110, n // 4),
                        np.array([0.0, -0.0, 1.0, -1.0, 19.999, 20.0, 20.001])])
    return x.astype(dtype)


# --- regression cases (no peer needed) --------------------------------------------------------

def test_pytorch_regression_beta3_threshold1(backend):
    # PyTorch issue: with beta=3, threshold=1 the derivative at x=0.2736 must be 0.69440615
    # (beta*x = 0.8208 is below the threshold, so sigmoid(0.8208); a past bug compared x, not
    # beta*x, with the threshold or returned 1).
    g = fsp.softplus_grad(np.float32(0.2736), beta=3, threshold=1, backend=backend)
    assert g.dtype == np.float32
    assert arrays.ulp_distance(g, np.float32(0.69440615)) <= 1
    g64 = fsp.softplus_grad(0.2736, beta=3, threshold=1, backend=backend)
    assert arrays.ulp_distance(g64, 1 / (1 + math.exp(-3 * 0.2736))) <= 1
    b = fsp.softplus_backward(np.float32(2.0), np.float32(0.2736), beta=3, threshold=1, backend=backend)
    assert arrays.ulp_distance(b, np.float32(2 * 0.69440615)) <= 1


def test_no_nan_derivative_for_high_threshold_float32(backend):
    # PyTorch's backward grad*z/(z+1), z = exp(beta*x), is inf/inf = NaN in float32 once beta*x
    # passes ~88.7 with a threshold above that; here the derivative is 1 (or sigmoid) there.
    x = np.array([80.0, 88.8, 95.0, 100.0, 1000.0], np.float32)
    for thr in (100.0, 1e4, None):
        g = fsp.softplus_grad(x, 1.0, thr, backend=backend)
        assert not np.isnan(g).any() and (g[1:] == 1).all()
        b = fsp.softplus_backward(np.ones_like(x), x, 1.0, thr, backend=backend)
        np.testing.assert_array_equal(b, g)


def test_no_overflow_where_naive_formula_overflows(backend):
    # log1p(exp(x)) overflows at x > 88.7 (float32) / 709.8 (float64); the stable form does not
    for dt, x in [(np.float32, 100.0), (np.float64, 800.0)]:
        assert fsp.softplus(dt(x), threshold=None, backend=backend) == dt(x)
        assert fsp.softplus(dt(x), 0.01, None, backend=backend) > dt(x)  # beta*x = 1 or 8: computed


# --- NumPy / SciPy ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_logaddexp(backend, dtype):
    # np.logaddexp(0, x) is softplus without threshold (what JAX and SciPy use)
    x = _sample(dtype)
    got = fsp.softplus(x, threshold=None, backend=backend)
    want = np.logaddexp(dtype(0), x)
    arrays.assert_ulp(got, want, 2, inputs={"x": x}, what="vs np.logaddexp")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_scipy_softplus(backend, dtype):
    special = pytest.importorskip("scipy.special")
    if not hasattr(special, "softplus"):
        pytest.skip("scipy.special.softplus needs SciPy >= 1.15")
    x = _sample(dtype, seed=1)
    arrays.assert_ulp(fsp.softplus(x, threshold=None, backend=backend), special.softplus(x), 2,
                      inputs={"x": x}, what="vs scipy.special.softplus")


def test_inverse_matches_tfp_formula(backend):
    # TensorFlow Probability's Softplus bijector inverse: y + log(-expm1(-y)); well-conditioned
    # (no cancellation) for y >= 2
    y = np.linspace(2, 60, 2001)
    arrays.assert_ulp(fsp.softplus_inverse(y, threshold=None, backend=backend),
                      y + np.log(-np.expm1(-y)), 2, inputs={"y": y}, what="vs TFP formula")


# --- PyTorch (optional) ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, 20.0), (0.5, 1.0), (3.0, 1.0),
                                            (1.0, 50.0)])
def test_matches_torch(backend, dtype, beta, threshold):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _sample(dtype, seed=2)
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    y = F.softplus(t, beta=beta, threshold=threshold)
    g = torch.from_numpy(np.random.default_rng(3).standard_normal(x.size).astype(dtype))
    y.backward(g)
    ty, tg = y.detach().numpy(), t.grad.numpy()
    got = fsp.softplus(x, beta, threshold, backend=backend)
    # the linear branch is chosen identically (same float test) and is x exactly
    lin = (x * dtype(beta)) > dtype(threshold)
    np.testing.assert_array_equal(got[lin], x[lin])
    np.testing.assert_array_equal(ty[lin], x[lin])
    # torch rounds beta*x in the input precision: kappa ULPs more when beta != 1 (test_backends)
    z = x.astype(np.float64) * beta
    extra = 0 if beta == 1 else 1 + arrays.kappa("softplus", z)
    arrays.assert_ulp(got, ty, 3 + extra, inputs={"x": x}, what="softplus vs torch")
    back = fsp.softplus_backward(g.numpy(), x, beta, threshold, backend=backend)
    ok = ~np.isnan(tg)  # torch's backward is NaN where exp(beta*x) overflows (see above)
    extra = 0 if beta == 1 else 1 + arrays.kappa("softplus_grad", z[ok])
    arrays.assert_ulp(back[ok], tg[ok], 4 + extra, inputs={"x": x[ok]}, what="backward vs torch")
