"""The shared test-array generator and ULP helpers (imported by every backend test: ``import arrays``).

``cases()`` yields ``Case(name, array)`` covering: float16/32/64, integers and bool; 0-d, empty,
1-4-D; C and F order, strided, negative strides, transposed, zero strides (broadcast), unaligned,
non-native byte order, read-only; values mixing the bulk range with NaN, +-inf, +-0.0, huge, tiny
and subnormal numbers, and the points where the functions change branch (threshold, ln 2). Every
float layout with room for them (>= ~60 elements) holds all the special values.

ULPs are counted as the distance between two floats in representable steps (ordered integer
keys), so ``ulp_distance(a, b) <= 1`` means "equal or neighbours".
"""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
INT_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32), np.dtype(np.int64),
              np.dtype(np.uint64), np.dtype(np.bool_))
FUNCS = ("softplus", "softplus_grad", "softplus_backward", "softplus_inverse")


class Case(NamedTuple):
    name: str
    array: np.ndarray


def specials(dtype) -> np.ndarray:
    """NaN, infinities, signed zeros, extremes and the branch points, in ``dtype``."""
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    sub = fi.smallest_subnormal
    v = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5,
         fi.max, -fi.max, fi.tiny, -fi.tiny, sub, -sub, sub * 3, fi.tiny / 7,
         20.0, -20.0, 1.0 / 3, math.log(2), 0.3, 0.9, 2.0, 10.0, 11.0, 15.0, 30.0, 40.0,
         88.0, 89.0, 103.0, -103.0, -104.0, -88.0, 700.0, 709.0, 710.0, -745.0, -740.0, 1e30,
         -1e30, 1e-30, -1e-30, 1e300, -1e300]
    with np.errstate(all="ignore"):
        out = np.array(v, dtype=np.float64).astype(dt)
        t = dt.type(20.0)  # both sides of the default threshold
        out = np.concatenate([out, np.array([np.nextafter(t, dt.type(0)), np.nextafter(t, dt.type(99)),
                                             np.nextafter(dt.type(1), dt.type(0)),
                                             np.nextafter(dt.type(1), dt.type(2))], dt)])
    return out


def values(dtype, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values of float ``dtype``: bulk in [-30, 30], log-uniform magnitudes over the whole
    range, points near ln 2 (the inverse's root), and the specials, shuffled."""
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    sp = specials(dt)
    k = max(n - len(sp), 0)
    bulk = rng.uniform(-30, 30, k // 2)
    lo, hi = math.log(float(fi.smallest_subnormal)), math.log(float(fi.max))
    mags = np.exp(rng.uniform(lo, hi, k // 4)) * rng.choice([-1.0, 1.0], k // 4)
    near_root = math.log(2) * (1 + rng.uniform(-0.3, 0.3, k - k // 2 - k // 4))
    with np.errstate(all="ignore"):
        v = np.concatenate([np.concatenate([bulk, mags, near_root]).astype(dt), sp])
    rng.shuffle(v)
    return v[:n]


def _with_specials(view: np.ndarray, sp: np.ndarray | None) -> np.ndarray:
    """Write the specials into the first elements (logical order) of a writeable view, so that
    every layout meets every special value (as far as it has room)."""
    if sp is not None and view.size:
        n = min(view.size, len(sp))
        view.flat[:n] = sp[rng_perm(len(sp))[:n]] if n < len(sp) else sp
    return view


def rng_perm(n: int) -> np.ndarray:
    return np.random.default_rng(n).permutation(n)


def _layouts(base: np.ndarray, rng: np.random.Generator, sp: np.ndarray | None = None) -> Iterator[Case]:
    """Views of the values in ``base`` (1-D, plenty long) in many layouts; each layout with room
    for them holds every value of ``sp`` (the specials)."""
    dt = base.dtype
    w = lambda v: _with_specials(v, sp)  # noqa: E731
    yield Case("0d", np.array(base[0]))
    yield Case("0d-b", np.array(base[-1]))
    yield Case("empty", base[:0])
    yield Case("empty-2d", base[:0].reshape(3, 0))
    yield Case("1d", w(base[:257].copy()))
    yield Case("1d-single", base[:1].copy())
    yield Case("2d-C", w(base[: 31 * 17].reshape(31, 17).copy()))
    yield Case("2d-F", w(np.asfortranarray(base[: 31 * 17].reshape(31, 17))))
    yield Case("2d-transposed", w(base[: 13 * 29].reshape(13, 29).copy().T))
    yield Case("3d", w(base[: 5 * 7 * 11].reshape(5, 7, 11).copy()))
    yield Case("4d", w(base[: 3 * 4 * 5 * 6].reshape(3, 4, 5, 6).copy()))
    yield Case("strided", w(base[: 3 * 300].copy()[::3]))
    yield Case("negative-stride", w(base[: 2 * 300].copy()[::-2]))
    yield Case("2d-mixed-strides", w(base[: 40 * 60].reshape(40, 60).copy()[::2, ::-3]))
    yield Case("broadcast-zero-stride", np.broadcast_to(base[:7], (9, 7)))
    ro = w(base[:300].copy())
    ro.flags.writeable = False
    yield Case("read-only", ro)
    yield Case("byteswapped", w(base[:300].astype(dt.newbyteorder("S"))))
    # unaligned: the data start one byte into a buffer
    raw = np.empty(300 * dt.itemsize + 1, np.uint8)
    un = raw[1:].view(dt)
    un[...] = base[:300]
    yield Case("unaligned", w(un))


def cases(dtypes=FLOAT_DTYPES + INT_DTYPES, *, seed: int = 0, large: bool = False) -> list[Case]:
    """Every test array: ``Case(f"{dtype}-{layout}", array)``.

    ``large=True`` adds one 1-D array of 200 003 elements per float32/float64 (beyond the
    dispatcher's PARALLEL_MIN_SIZE, so multi-threaded paths run).
    """
    rng = np.random.default_rng(seed)
    out = []
    for dt in map(np.dtype, dtypes):
        if dt.kind == "f":
            base = values(dt, 3000, rng)
        elif dt.kind == "b":
            base = rng.integers(0, 2, 3000).astype(dt)
        else:
            info = np.iinfo(dt)
            edge = np.array([info.min, info.max, 0, 1, 2], dtype=dt)
            bulk = rng.integers(max(info.min, -50), min(info.max, 50), 2995, endpoint=True)
            base = np.concatenate([edge, bulk.astype(dt)])
        sp = specials(dt) if dt.kind == "f" else None
        out.extend(Case(f"{dt}-{c.name}", c.array) for c in _layouts(base, rng, sp))
        if large and dt.kind == "f" and dt.itemsize >= 4:
            out.append(Case(f"{dt}-large", values(dt, 200_003, rng)))
    return out


# --- ULPs --------------------------------------------------------------------------------------

_INT = {2: np.int16, 4: np.int32, 8: np.int64}


def _keys(a: np.ndarray) -> np.ndarray:
    """Monotone integer keys: consecutive floats get consecutive keys, -0.0 and +0.0 the same."""
    a = np.ascontiguousarray(a)
    i = a.view(_INT[a.dtype.itemsize]).astype(np.int64)
    mn = np.iinfo(_INT[a.dtype.itemsize]).min
    return np.where(i < 0, mn - i, i)


def ulp_distance(actual, expected) -> np.ndarray:
    """Elementwise distance in representable steps of ``expected``'s float dtype (float64 array).

    NaN vs NaN and equal infinities count 0; NaN vs a number, or an infinity vs anything else, inf.
    """
    e = np.asarray(expected)
    a = np.asarray(actual)
    if a.dtype.newbyteorder("=") != e.dtype.newbyteorder("="):
        raise AssertionError(f"dtype {a.dtype} differs from the expected {e.dtype}")
    dt = e.dtype.newbyteorder("=")
    a = np.asarray(a, dt)
    e = np.asarray(e, dt)
    ka, ke = _keys(a), _keys(e)
    same_sign = (ka >= 0) == (ke >= 0)
    with np.errstate(over="ignore"):
        d = np.where(same_sign, np.abs(ka - ke).astype(np.float64),
                     np.abs(ka.astype(np.float64)) + np.abs(ke.astype(np.float64)))
    na, ne = np.isnan(a), np.isnan(e)
    d = np.where(na | ne, np.where(na & ne, 0.0, np.inf), d)
    ia, ie = np.isinf(a), np.isinf(e)
    d = np.where((ia | ie) & ~(na | ne), np.where(a == e, 0.0, np.inf), d)
    return d.reshape(np.broadcast_shapes(a.shape, e.shape))


def kappa(func: str, z) -> np.ndarray:
    """|relative condition number| of ``func`` with respect to ``z = beta*x`` (float64, finite).

    Rounding ``z`` to the working precision (relative error <= 2**-p) moves the result by at most
    ``kappa`` ULPs: that is the extra error allowed to a backend that rounds ``beta*x`` when
    beta != 1 (the reference forms it exactly). It grows like |z| where the result is ~exp(z)
    (softplus and grad for very negative z) and without bound near the inverse's root z = ln 2.
    """
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(z))
        sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))       # sigmoid(z)
        sig_neg = np.where(z >= 0, e / (1 + e), 1 / (1 + e))   # sigmoid(-z)
        if func == "softplus":
            sp = np.maximum(z, 0) + np.log1p(e)
            k = z * sig / sp
        elif func in ("softplus_grad", "softplus_backward"):
            k = z * sig_neg
        elif func == "softplus_inverse":
            # f = log(expm1(z)), near its root z = ln 2 as log1p(2*expm1(z - ln 2)) so that f is
            # not lost to cancellation (which would make kappa look finite or zero)
            d = (z - 0.6931471805599453) - 2.3190468138462996e-17
            f = np.where(np.abs(d) < 0.25, np.log1p(2 * np.expm1(d)), z + np.log(-np.expm1(-z)))
            k = np.where(z > 0, z / (-np.expm1(-z) * f), 0.0)  # z <= 0: NaN, exact
        else:
            raise ValueError(func)
    k = np.abs(k)
    # special inputs (NaN, inf) have exact results: no allowance; an infinite kappa at a finite
    # z (the inverse's root itself) allows anything
    return np.where(np.isfinite(z), np.where(np.isnan(k), np.inf, k), 0.0)


def format_worst(d: np.ndarray, actual, expected, inputs: dict, k: int = 5,
                 score: np.ndarray | None = None) -> str:
    """Text of the ``k`` worst elements (largest ``score``, default ``d``): index, inputs,
    actual, expected, ULPs."""
    d = np.asarray(d)
    flat = d.ravel()
    s = flat if score is None else np.asarray(score).ravel()
    order = np.argsort(-np.where(np.isnan(s), np.inf, s), kind="stable")[:k]
    a = np.broadcast_to(np.asarray(actual), d.shape).ravel()
    e = np.broadcast_to(np.asarray(expected), d.shape).ravel()
    ins = {n: np.broadcast_to(np.asarray(v), d.shape).ravel() for n, v in inputs.items()}
    lines = []
    for i in order:
        arg = ", ".join(f"{n}={v[i]!r}" for n, v in ins.items())
        idx = tuple(int(j) for j in np.unravel_index(i, d.shape)) if d.ndim else ()
        lines.append(f"  {idx} {arg}: got {a[i]!r}, expected {e[i]!r} ({flat[i]:g} ULP)")
    return "\n".join(lines)


def assert_ulp(actual, expected, max_ulp=1.0, *, inputs: dict | None = None, what: str = "") -> None:
    """Assert shape, dtype and ``ulp_distance(actual, expected) <= max_ulp`` elementwise
    (``max_ulp`` may be an array broadcasting to the shape)."""
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    d = ulp_distance(a, e)
    allowed = np.broadcast_to(max_ulp, d.shape)
    # NaN vs number and infinity vs anything else fail whatever the allowance
    an, en = np.isnan(a.astype(np.float64)), np.isnan(e.astype(np.float64))
    ai, ei = np.isinf(a.astype(np.float64)), np.isinf(e.astype(np.float64))
    hard = (an != en) | ((ai | ei) & ~an & ~en & (a.astype(np.float64) != e.astype(np.float64)))
    bad = (d > allowed) | hard
    if bad.any():
        with np.errstate(invalid="ignore"):  # inf - inf: a hard failure with infinite allowance
            score = np.where(bad, np.where(d == allowed, np.inf, d - allowed), -np.inf)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {d.size} elements beyond the allowed ULPs "
            f"(max {float(np.max(d)):g}); worst:\n"
            + format_worst(d, a, e, {**(inputs or {}), "allowed": allowed},
                           score=score))
