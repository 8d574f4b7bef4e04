"""Accuracy of every compiled backend in ULPs, against references that share no code with them.

* float32: every one of the 2**32 bit patterns, for softplus and softplus_grad (the issue's
  exhaustive bound) and softplus_inverse. The reference is the textbook stable formula evaluated
  by NumPy in float64, whose error (~2**-51 relative) is far below the float32 ulp, so the measured
  error is exact to ~2**-28 ulp; log(expm1(z)) within 2**-12 of its root ln2, where float64
  cancels, comes from mpmath. Chunks are split over two threads (NumPy releases the GIL).
* float64: >= 1e7 random and edge samples against np.longdouble (x87 80-bit, 2**-64 relative),
  and mpmath where long double itself cancels (the inverse next to its root z = ln2).

The bound is 1.0 ulp (measured: float64 0.75; float32 0.50-0.52 through float64, 0.82 for the
float32-native beta == 1 kernels, whose worst cases are subnormal results); for a beta that is not a power of two,
beta*x and the final division by beta each round once more, so 2 ulp is allowed there.
"""
from __future__ import annotations

import concurrent.futures as cf
import math

import numpy as np
import pytest

import fastsoftplus as fsp

COMPILED = [b for b in fsp.available_backends() if b != "numpy"]
pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled backend is available")
LD = np.longdouble
HAVE_LONG_DOUBLE = np.finfo(LD).nmant >= 63


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype) -> np.ndarray:
    """|got - ref| in units of the ulp of ref rounded to dtype (subnormal spacing at the bottom).

    NaN where exactly one of the two is NaN; 0 where they are equal (infinities included)."""
    dtype = np.dtype(dtype)
    wide = LD if dtype == np.float64 else np.float64
    r = ref.astype(dtype)
    spacing = np.maximum(np.spacing(np.abs(r)).astype(wide), wide(np.finfo(dtype).smallest_subnormal))
    # invalid: signalling-NaN bit patterns of the float32 sweep pass through unchanged; widening
    # them raises the flag
    with np.errstate(invalid="ignore", over="ignore"):
        err = (np.abs(got.astype(wide) - ref.astype(wide)) / spacing).astype(np.float64)
        same = (got.astype(wide) == ref.astype(wide)) | (np.isnan(got) & np.isnan(ref))
    err[same] = 0.0
    return err


#: Within this of ln2, log(expm1(z)) is too close to 0 for float64 (its absolute error ~2**-53 is
#: > 2**-42 relative there): those few z are computed by mpmath instead.
INVERSE_ROOT_BAND = 2.0**-12


def _log_expm1_mpmath(z: np.ndarray) -> np.ndarray:
    mp = pytest.importorskip("mpmath")
    with mp.workprec(120):
        return np.array([float(mp.log(mp.expm1(mp.mpf(float(v))))) for v in z])


def ref_f64_formula(func: str, z: np.ndarray) -> np.ndarray:
    """softplus / sigmoid / log(expm1) of a float64 z by the textbook formulas (no threshold)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        if func == "softplus":
            return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
        if func == "softplus_inverse":  # z > 0 (NaN below)
            y = np.log(np.expm1(z))
            near = np.abs(z - math.log(2)) < INVERSE_ROOT_BAND
            y[near] = _log_expm1_mpmath(z[near])
            return y
        t = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + t), t / (1.0 + t))


def ref_f32(func: str, x: np.ndarray, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    """Thresholded reference for float32 x, in float64: threshold decided on the float32 product."""
    b = np.float32(beta)
    with np.errstate(over="ignore"):
        cut = (x * b) > np.float32(threshold)
    y = ref_f64_formula(func, x.astype(np.float64) * np.float64(b))
    if func in ("softplus", "softplus_inverse"):
        y = y / np.float64(b)
        return np.where(cut, x.astype(np.float64), y)
    return np.where(cut, 1.0, y)


CHUNK = 1 << 20
LN2_F32 = np.float32(math.log(2))


def _f32_range(lo: int, hi: int) -> np.ndarray:
    return np.arange(lo, hi, dtype=np.uint32).view(np.float32)


def _interesting(func: str, x: np.ndarray) -> np.ndarray:
    """The inputs checked against the reference; the others have an exact expected result."""
    if func == "softplus_inverse":
        return (x > 0) & (x <= 20)
    return (np.abs(x) >= 2.0**-25) & (x <= 20) & (x > -105)


def _trivial_expected(func: str, x: np.ndarray) -> np.ndarray:
    """Exact results where no reference is needed (threshold 20, beta 1): NaN -> NaN; x > 20 -> x
    (grad 1); x <= -105 -> 0 (exp(-104) < 2**-150, half the smallest subnormal, so the result
    rounds to 0); |x| < 2**-25 -> float32(ln2) / 0.5 (the x/2 or x/4 term is below half an ulp,
    and float32(ln2) is 1.9e-9 from ln2, far from a tie). The inverse: NaN for y <= 0 (-0.0 and
    -inf included), y for y > 20."""
    y = np.full(x.shape, np.nan, np.float32)
    if func == "softplus_inverse":
        y[x > 20] = x[x > 20]
        return y
    big, neg, tiny = x > 20, x <= -105, np.abs(x) < 2.0**-25
    y[big] = x[big] if func == "softplus" else 1.0
    y[neg] = 0.0
    y[tiny] = LN2_F32 if func == "softplus" else 0.5
    return y


def _check_f32_chunk(lo: int, hi: int, func: str) -> dict[str, tuple[float, int, float]]:
    """Max ulp error of each backend over the bit patterns [lo, hi)."""
    x = _f32_range(lo, hi)
    interesting = _interesting(func, x)
    xi = x[interesting]
    ref = ref_f32(func, xi)
    trivial = _trivial_expected(func, x[~interesting])
    out = {}
    for backend in COMPILED:
        y = getattr(fsp, func)(x, backend=backend)
        yt = y[~interesting]
        bad = int((~((yt == trivial) | (np.isnan(yt) & np.isnan(trivial)))).sum())
        err = ulp_error(y[interesting], ref, np.float32) if xi.size else np.zeros(1)
        worst = int(np.nanargmax(err)) if xi.size and not np.isnan(err).all() else 0
        e = float(np.nanmax(err)) if not bad else math.inf
        out[backend] = (e, int(np.isnan(err).sum()), float(xi[worst]) if xi.size else math.nan)
    return out


@pytest.mark.exhaustive
@pytest.mark.parametrize("func", ["softplus", "softplus_grad", "softplus_inverse"])
def test_float32_exhaustive(func):
    """All 2**32 inputs: those of _interesting (~13% of them for softplus and grad, |x| in
    [2**-25, 128); ~26% for the inverse, y in (0, 20]) against the float64 reference, the rest
    against their exact result (see _trivial_expected)."""
    worst: dict[str, tuple[float, int, float]] = {b: (0.0, 0, 0.0) for b in COMPILED}
    ranges = [(a, min(a + CHUNK, 1 << 32)) for a in range(0, 1 << 32, CHUNK)]
    with cf.ThreadPoolExecutor(2) as pool:
        for res in pool.map(lambda r: _check_f32_chunk(*r, func), ranges):
            for b, (e, nans, at) in res.items():
                w = worst[b]
                worst[b] = (max(w[0], e), w[1] + nans, at if e > w[0] else w[2])
    for b, (e, nans, at) in worst.items():
        assert nans == 0, f"{b}: {nans} NaN mismatches"
        assert e <= 1.0, f"{b}: {func} float32 max error {e:.3f} ulp at x={at!r} (inf: a trivial case)"


def f64_samples(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = n // 6
    edges = np.array([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, -1e-300,
                      20.0, np.nextafter(20.0, 21), 40.0, np.nextafter(40.0, 0), -708.4, -709.8,
                      -744.4, -745.2, 1e308, -1e308, 1.0, -1.0, math.log(2)])
    return np.concatenate([
        rng.uniform(-800, 800, m), rng.standard_normal(m) * 30, -np.exp(rng.uniform(-40, 6.6, m)),
        np.exp(rng.uniform(-745, 3.7, m)), -np.exp(rng.uniform(-745, 6.6, m)),
        rng.uniform(-50, 50, n - 5 * m), edges, table_edges()])


def table_edges() -> np.ndarray:
    """Where the float64 softplus table reduction switches: a = -|x| at -SP_TAB_SHIFT - (k + 1/2)*ln2
    (k*ln2 taken off, down to EXP_ARG_MIN), and a = -(j + 1/2)/SP_TAB_SCALE (the table entry),
    each with its neighbours; a wrong index there reads past the table or the wrong entry."""
    from fastsoftplus import _constants as C
    ks = np.arange(-2, int((-C.EXP_ARG_MIN - C.SP_TAB_SHIFT) / math.log(2)) + 2)
    js = np.arange(C.SP_TAB_LEN + 2)
    mid = np.concatenate([-(C.SP_TAB_SHIFT + (ks + 0.5) * math.log(2)), -(js + 0.5) / C.SP_TAB_SCALE])
    mid = mid[mid >= C.EXP_ARG_MIN - 1]
    return np.concatenate([mid, np.nextafter(mid, 0), np.nextafter(mid, -np.inf), -mid])


def ref_f64(func: str, x: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    """Thresholded reference in long double; z = beta*x rounded to float64 as the contract says."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        z = x * beta
        zl = z.astype(LD)
        cut = z > threshold
        if func == "softplus":
            y = (np.maximum(zl, 0) + np.log1p(np.exp(-np.abs(zl)))) / LD(beta)
            return np.where(cut | (z >= 40), x.astype(LD), y)  # >= 40: exact softplus is x
        t = np.exp(-np.abs(zl))
        y = np.where(zl >= 0, 1 / (1 + t), t / (1 + t))
        return np.where(cut, LD(1), y)


@pytest.mark.skipif(not HAVE_LONG_DOUBLE, reason="needs an 80-bit long double reference")
@pytest.mark.parametrize("func", ["softplus", "softplus_grad"])
def test_float64_sampled(func):
    x = f64_samples(10**7)
    ref = ref_f64(func, x, 1.0, 20.0)
    for backend in COMPILED:
        err = ulp_error(getattr(fsp, func)(x, backend=backend), ref, np.float64)
        assert not np.isnan(err).any(), backend
        assert err.max() <= 1.0, f"{backend}: {func} max {err.max():.3f} ulp at x={x[err.argmax()]!r}"


def test_float64_softplus_table_is_correctly_rounded():
    """The table behind float64 softplus and sigmoid (_constants.generated_tables(), computed with
    the decimal module; setup.py writes the same numbers into the C header) against mpmath at 300
    bits: log1p(e**a_j) and sigmoid(a_j), each as hi + lo with both parts correctly rounded."""
    mp = pytest.importorskip("mpmath")
    from fastsoftplus import _constants as C
    t = C.generated_tables()
    assert all(len(v) == C.SP_TAB_LEN for v in t.values())
    with mp.workprec(300):
        for j in range(C.SP_TAB_LEN):
            e = mp.exp(mp.mpf(-j) / C.SP_TAB_SCALE)
            value, sig = mp.log1p(e), e / (1 + e)
            want = (float(value), float(value - float(value)), float(sig), float(sig - float(sig)))
            got = tuple(t[name][j] for name in ("SP_L_HI", "SP_L_LO", "SP_SIGMA", "SP_SIGMA_LO"))
            assert got == want, j


@pytest.mark.skipif(not HAVE_LONG_DOUBLE, reason="needs an 80-bit long double reference")
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0, 10.0])
@pytest.mark.parametrize("threshold", [20.0, 1.0, None])
@pytest.mark.parametrize("func", ["softplus", "softplus_grad"])
def test_beta_threshold(func, beta, threshold):
    thr = math.inf if threshold is None else threshold
    bound = 1.0 if math.log2(beta).is_integer() else 2.0  # beta*x and /beta round otherwise
    x64 = f64_samples(6 * 10**5, seed=1)
    x32 = np.random.default_rng(2).standard_normal(10**6).astype(np.float32) * np.float32(30)
    ref64 = ref_f64(func, x64, beta, thr)
    ref32 = ref_f32(func, x32, beta, thr)
    for backend in COMPILED:
        f = getattr(fsp, func)
        e64 = ulp_error(f(x64, beta, threshold, backend=backend), ref64, np.float64)
        e32 = ulp_error(f(x32, beta, threshold, backend=backend), ref32, np.float32)
        assert not np.isnan(e64).any() and not np.isnan(e32).any(), backend
        assert e64.max() <= bound, f"{backend} f64: {e64.max():.3f} ulp at {x64[e64.argmax()]!r}"
        assert e32.max() <= bound, f"{backend} f32: {e32.max():.3f} ulp at {x32[e32.argmax()]!r}"


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0, 10.0])
@pytest.mark.parametrize("threshold", [20.0, 1.0, None])
def test_inverse_float32_beta_threshold(beta, threshold):
    """The float32 inverse for other betas and thresholds: beta*y is exact in float64 and the
    result rounds once to float32, so 1 ulp holds for every beta. 1e6 y log-spread over
    [3e-44, 60], plus the 4001 float32 around the root ln2/beta."""
    thr = math.inf if threshold is None else threshold
    y = np.exp(np.random.default_rng(3).uniform(-100, 4.1, 10**6)).astype(np.float32)
    root = np.array([math.log(2) / beta], np.float32).view(np.int32)[0]
    near = (root + np.arange(-2000, 2001, dtype=np.int32)).view(np.float32)
    y = np.concatenate([y, near])
    ref = ref_f32("softplus_inverse", y, beta, thr)
    for backend in COMPILED:
        err = ulp_error(fsp.softplus_inverse(y, beta, threshold, backend=backend), ref, np.float32)
        assert not np.isnan(err).any(), backend
        assert err.max() <= 1.0, f"{backend}: {err.max():.3f} ulp at y={y[err.argmax()]!r}"


def test_inverse_float32_products_next_to_root():
    """float32 y and beta whose exact product lies within 1e-12 of ln2 (the 50 closest of 2e6
    random pairs): expm1(beta*y) is 1 + 2p with 2p ~ 1e-13, so the inverse must keep 2p apart
    from the 1 (a plain double sum would lose 2**-9 of the result: thousands of ulps)."""
    mp = pytest.importorskip("mpmath")
    rng = np.random.default_rng(4)
    beta = rng.uniform(0.25, 4, 2 * 10**6).astype(np.float32)
    y = (math.log(2) / beta.astype(np.float64)).astype(np.float32)
    dist = np.abs(y.astype(np.float64) * beta - math.log(2))  # ranks only: exact enough
    pick = np.argsort(dist)[:50]
    with mp.workprec(200):
        for backend in COMPILED:
            for yv, bv in zip(y[pick], beta[pick]):
                got = fsp.softplus_inverse(np.array([yv]), float(bv), None, backend=backend)[0]
                exact = mp.log(mp.expm1(mp.mpf(float(yv)) * mp.mpf(float(bv)))) / mp.mpf(float(bv))
                err = abs(mp.mpf(float(got)) - exact) / float(np.spacing(np.float32(abs(float(exact)))))
                assert err <= 1.0, f"{backend}: inverse({yv!r}, beta={bv!r}) = {got!r}, exact {float(exact)!r}"


def test_inverse_near_root_and_tiny():
    """log(expm1(z)) next to its root ln2 and for tiny/subnormal z, against mpmath at 200 bits."""
    mp = pytest.importorskip("mpmath")
    mp.mp.prec = 200
    ln2 = math.log(2)
    x = np.concatenate([ln2 + np.arange(-200, 201) * 2.0**-53, ln2 * (1 + np.linspace(-1e-6, 1e-6, 400)),
                        [5e-324, 1e-310, 1e-200, 1e-20, 1e-8, 0.1, 1.0, 5.0, 39.9]])
    exact = [mp.log(mp.expm1(mp.mpf(float(v)))) for v in x]
    for backend in COMPILED:
        y = fsp.softplus_inverse(x, threshold=None, backend=backend)
        for v, got, want in zip(x, y, exact):
            r = float(want)
            err = abs(mp.mpf(float(got)) - want) / max(float(np.spacing(abs(r))), 5e-324)
            assert err <= 1.0, f"{backend}: inverse({v!r}) = {got!r}, exact {r!r}: {float(err):.2f} ulp"


def test_subnormal_results_not_flushed():
    """Results below the smallest normal are computed, not flushed to zero (mpmath reference)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.prec = 200
    x64 = np.linspace(-744.0, -708.5, 301)
    x32 = np.linspace(-103.0, -87.5, 301).astype(np.float32)
    for backend in COMPILED:
        for x, dt in [(x64, np.float64), (x32, np.float32)]:
            y = fsp.softplus(x, backend=backend)
            g = fsp.softplus_grad(x, backend=backend)
            assert (y > 0).all() and (g > 0).all(), backend
            for v, a, b in zip(x[::10], y[::10], g[::10]):
                e = mp.exp(mp.mpf(float(v)))
                tiny = float(np.finfo(dt).smallest_subnormal)
                assert abs(mp.mpf(float(a)) - mp.log1p(e)) <= tiny, (backend, v)
                assert abs(mp.mpf(float(b)) - e / (1 + e)) <= tiny, (backend, v)


def test_backends_agree_float32_sample():
    """The compiled backends run one algorithm: they agree within 1 ulp (here: every 251st
    float32 bit pattern, all four functions)."""
    if len(COMPILED) < 2:
        pytest.skip("needs two compiled backends")
    x = np.arange(0, 1 << 32, 251, dtype=np.uint64).astype(np.uint32).view(np.float32)
    g = np.float32(0.75)
    for func in ["softplus", "softplus_grad", "softplus_inverse", "softplus_backward"]:
        f = getattr(fsp, func)
        args = (g, x) if func == "softplus_backward" else (x,)
        ys = [f(*args, backend=b) for b in COMPILED]
        with np.errstate(invalid="ignore"):  # signalling NaNs pass through; widening flags them
            err = ulp_error(ys[1], ys[0].astype(np.float64), np.float32)
        assert not np.isnan(err).any() and err.max() <= 1.0, (func, err.max())


def test_backends_bitwise_equal_float64():
    """kernels.h and _nbkernels.py run the float64 kernels step for step, so where the C variant
    has an FMA (numba's llvm.fma always computes one) the two backends agree bit for bit: 1e6
    samples plus the table reduction's switch points, all four functions, beta 1 and 0.75,
    threshold 20 and none. The baseline C variant writes a*b + c for FSP_FMA: within 1 ulp only."""
    if set(COMPILED) != {"cython", "numba"}:
        pytest.skip("needs both compiled backends")
    from fastsoftplus._cy import _ext
    if _ext.get_simd() not in ("avx512", "avx2"):
        pytest.skip(f"the C variant in use ({_ext.get_simd()}) has no FMA")
    x = np.concatenate([f64_samples(10**6, seed=5), table_edges()])
    g = np.random.default_rng(6).standard_normal(x.size)
    for func in ["softplus", "softplus_grad", "softplus_backward", "softplus_inverse"]:
        f = getattr(fsp, func)
        args = (g, x) if func == "softplus_backward" else (np.abs(x),) if func == "softplus_inverse" else (x,)
        for beta, threshold in [(1.0, 20.0), (0.75, None)]:
            c, n = (f(*args, beta, threshold, backend=b) for b in ("cython", "numba"))
            same = (c.view(np.int64) == n.view(np.int64)) | (np.isnan(c) & np.isnan(n))
            assert same.all(), (func, beta, threshold, args[-1][~same][:5], c[~same][:5], n[~same][:5])


def _plain_inputs(dtype: type, hi: float, n: int, seed: int) -> np.ndarray:
    """n inputs in the plain range (PLAIN_MIN, hi) of _constants.py: uniform, log-uniform
    magnitudes of both signs down to the smallest subnormal, and the range's own edges."""
    from fastsoftplus import _constants as C
    lo = C.PLAIN_MIN_F32 if dtype == np.float32 else C.PLAIN_MIN_F64
    rng = np.random.default_rng(seed)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    mags = np.exp(rng.uniform(math.log(tiny), math.log(min(-lo, hi)), n // 2))
    x = np.concatenate([rng.uniform(lo, hi, n - n // 2 - 8), mags * rng.choice([-1.0, 1.0], mags.size),
                        [0.0, -0.0, tiny, -tiny, 1.0, -1.0, lo, hi]]).astype(dtype)
    x[-2:] = np.nextafter(x[-2:], dtype(0))  # just inside (lo, hi)
    return rng.permutation(x)


def _full_kernels(backend: str, func: str, args: tuple, threshold: float | None) -> np.ndarray:
    """func through the backend's full beta == 1 kernel whatever the blocks hold: its ufunc with a
    per-element beta of ones (the loops without the plain-range scan)."""
    if backend == "cython":
        from fastsoftplus._cy import _ext
        uf = getattr(_ext, func)
    else:
        from fastsoftplus import _numba
        uf = _numba._get_ufunc(func)
    x = args[-1]
    thr = x.dtype.type(math.inf if threshold is None else threshold)
    with np.errstate(all="ignore"):  # the raw numba ufunc flags inf/NaN inputs (NaN results)
        return uf(*args, np.ones_like(x), thr)


def _beta1_cases(g: np.ndarray, x: np.ndarray, threshold: float | None):
    """(backend, func, args, full) for each compiled backend and softplus/grad/backward with
    beta 1: args the inputs ((g, x) for backward), full their results by _full_kernels."""
    for backend in COMPILED:
        for func in ["softplus", "softplus_grad", "softplus_backward"]:
            args = (g, x) if func == "softplus_backward" else (x,)
            yield backend, func, args, _full_kernels(backend, func, args, threshold)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_blocks_match_full_kernels(dtype):
    """The loops send each block of PLAIN_BLOCK inputs that all lie in the plain range through
    kernels without their edge handling (_constants.py, PLAIN_BLOCK): the results must be the full
    kernels' bit for bit. Each compiled backend, softplus/grad/backward with beta 1, thresholds
    20, 1 and none, one and two threads (blocks then start at other offsets); and where the C
    variant has an FMA, the two backends' plain results agree too."""
    from fastsoftplus._constants import IDENTITY_ABOVE, PLAIN_BLOCK
    if not COMPILED:
        pytest.skip("needs a compiled backend")
    itype = np.int32 if dtype == np.float32 else np.int64
    for threshold in [20.0, 1.0, None]:
        hi = min(IDENTITY_ABOVE, math.inf if threshold is None else threshold)
        x = _plain_inputs(dtype, hi, PLAIN_BLOCK * 64 + 333, seed=7)
        g = np.random.default_rng(8).standard_normal(x.size).astype(dtype)
        plain_by_backend = {}
        for backend, func, args, full in _beta1_cases(g, x, threshold):
            for threads in (1, 2):  # conftest's autouse fixture restores the count
                fsp.set_num_threads(threads)
                plain = getattr(fsp, func)(*args, 1.0, threshold, backend=backend)
                same = plain.view(itype) == full.view(itype)
                assert same.all(), (backend, func, threshold, threads, x[~same][:5],
                                    plain[~same][:5], full[~same][:5])
            plain_by_backend[backend, func] = plain
        if set(COMPILED) == {"cython", "numba"}:
            from fastsoftplus._cy import _ext
            if _ext.get_simd() in ("avx512", "avx2"):
                for func in ["softplus", "softplus_grad", "softplus_backward"]:
                    c, n = plain_by_backend["cython", func], plain_by_backend["numba", func]
                    assert (c.view(itype) == n.view(itype)).all(), (func, threshold)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_blocks_fall_back(dtype):
    """Blocks that leave the plain range mid-stream: the loops run a block straight through the
    plain kernel when the one before passed, and compute a failing block again with the full
    kernel; in place (out shares memory with an input) the C loops scan each block first and
    numba's read it from a copy. Every pattern -- a failing first block, a failing block after
    passing ones, failing runs, a passing block after a failing one, a failing partial last
    block -- must give the full kernels' bits, with out separate and in place, on one and two
    threads."""
    from fastsoftplus._constants import PLAIN_BLOCK
    if not COMPILED:
        pytest.skip("needs a compiled backend")
    itype = np.int32 if dtype == np.float32 else np.int64
    threshold = 20.0
    bad_blocks = [0, 3, 4, 6, 10, 11, 13]  # 13: the partial last block
    n = PLAIN_BLOCK * 13 + 77
    x = _plain_inputs(dtype, threshold, n, seed=11)
    rng = np.random.default_rng(12)
    outside = [np.nan, np.inf, -np.inf, 20.5, 45.0, -30.0, -50.0, -1e6]
    for k, b in enumerate(bad_blocks):
        i = b * PLAIN_BLOCK + int(rng.integers(0, min(PLAIN_BLOCK, n - b * PLAIN_BLOCK)))
        x[i] = outside[k % len(outside)]
    g = rng.standard_normal(n).astype(dtype)
    for backend, func, args, full in _beta1_cases(g, x, threshold):
        for threads in (1, 2):  # conftest's autouse fixture restores the count
            fsp.set_num_threads(threads)
            results = {"separate": getattr(fsp, func)(*args, 1.0, threshold, backend=backend)}
            for which in range(len(args)):  # out is each input in turn
                inputs = [a.copy() for a in args]
                getattr(fsp, func)(*inputs, 1.0, threshold, backend=backend, out=inputs[which])
                results[f"in place on input {which}"] = inputs[which]
            for how, got in results.items():
                same = got.view(itype) == full.view(itype)
                assert same.all(), (backend, func, threads, how, np.flatnonzero(~same)[:5],
                                    got[~same][:5], full[~same][:5])


def test_inverse_underflowing_product():
    """beta*y below the normal range (found by the stress fuzz: y=2.2e-308, beta=1e-300): the
    kernels take log of the exact, rescaled product, for any y and beta down to 2**-1074."""
    mp = pytest.importorskip("mpmath")
    mp.mp.prec = 200
    cases = [(2.2250738585072014e-308, 1e-300), (5e-324, 0.5), (1e-300, 1e-300), (0.3, 1e-300),
             (1e-200, 1e-200), (1e-310, 4.0), (5e-324, 2.0**-1000)]
    for backend in COMPILED:
        for y, beta in cases:
            exact = mp.log(mp.expm1(mp.mpf(y) * mp.mpf(beta))) / mp.mpf(beta)
            got = fsp.softplus_inverse(np.array([y]), beta, None, backend=backend)[0]
            r = float(exact)
            err = abs(mp.mpf(float(got)) - exact) / float(np.spacing(abs(r)))
            assert err <= 1.0, f"{backend}: inverse({y!r}, beta={beta!r}) = {got!r}, exact {r!r}"
