"""The ``"numpy"`` backend: a stable NumPy implementation, the fallback and the test oracle.

Every function is evaluated in a wider precision than the input and rounded once at the end, so
the result is within 1 ULP of the exact value (in practice within 0.51 ULP):

- float32 input is computed in float64;
- float64 input is computed in ``np.longdouble`` when it has at least 63 mantissa bits (the x87
  80-bit format on x86-64, or IEEE quad on aarch64 Linux). Where ``np.longdouble`` is plain double
  (Windows, macOS on arm64) float64 is computed in float64 by the same stable formulas: a few ULP
  instead of 1 (see ``WIDE_FLOAT64``; the accuracy tests skip the 1-ULP claim there).

Semantics are those of ``torch.nn.functional.softplus``: beta and threshold are first rounded to the
input precision, ``z = beta*x`` is computed in the input precision for the threshold test (strict
``>``), and the value itself is the exact function of ``x`` and the rounded beta:

- softplus: ``max(x, 0) + log1p(exp(-|z|)) / beta``;
- grad: the stable sigmoid ``1/(1+e)`` for ``z >= 0``, ``e/(1+e)`` below, ``e = exp(-|z|)``;
- backward: ``g * grad`` with ``grad`` the derivative above rounded to the input precision, the
  IEEE product in that precision (exactly ``grad_output * softplus_grad(x)``: ``inf`` times a
  derivative that underflows to 0 is NaN, as in PyTorch);
- inverse: ``y + log(-expm1(-z)) / beta`` for ``z > 0``, NaN for ``y <= 0``. Near the root
  ``z = ln 2`` this difference cancels catastrophically (the function is ill-conditioned there),
  so that band is computed as ``log1p(2*expm1(d)) / beta`` with ``d = z - ln 2`` formed exactly
  (exact product ``beta*y``, ln 2 in three doubles).

Nothing overflows (``softplus(1000.0) == 1000.0``) and no floating-point warning escapes.
It is slow on purpose (longdouble transcendental functions cost ~100 ns per element).
"""

from __future__ import annotations

import math

import numpy as np

NAME = "numpy"

#: Elements per chunk: bounds the wide temporaries (longdouble: 16 bytes each) to cache size.
CHUNK = 8192

#: True when float64 is evaluated in a wider type (np.longdouble with >= 63 mantissa bits).
WIDE_FLOAT64 = np.finfo(np.longdouble).nmant >= 63

_WIDE = {
    np.dtype(np.float32): np.dtype(np.float64),
    np.dtype(np.float64): np.dtype(np.longdouble) if WIDE_FLOAT64 else np.dtype(np.float64),
}

# ln 2 = _LN2_A + _LN2_B + _LN2_C, three doubles (from mpmath at 200 bits):
# a = float(ln2); b = float(ln2 - a); c = float(ln2 - a - b)
_LN2_A = float.fromhex("0x1.62e42fefa39efp-1")
_LN2_B = float.fromhex("0x1.abc9e3b39803fp-56")
_LN2_C = float.fromhex("0x1.7b57a079a1934p-111")

# The band of z = beta*y around ln 2 where y + log(-expm1(-z))/beta cancels by more than ~2 bits.
_ROOT_LO = 0.44
_ROOT_HI = 0.94

FUNCS = ("softplus", "softplus_grad", "softplus_backward", "softplus_inverse")


def info() -> dict[str, str]:
    """Describe how this backend computes (for ``python -m fastsoftplus info``)."""
    ld = np.finfo(np.longdouble)
    wide = f"longdouble ({ld.nmant + 1}-bit mantissa)" if WIDE_FLOAT64 else "float64 (no wider type here)"
    return {"float32 computed in": "float64", "float64 computed in": wide, "threading": "none"}


def _two_prod(a: np.ndarray, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact product in float64: ``hi + lo == a*b`` (Dekker/Veltkamp; |a|, |b| near 1, no overflow)."""
    hi = a * b
    c = 134217729.0 * a  # 2**27 + 1
    ah = c - (c - a)
    al = a - ah
    c = 134217729.0 * b
    bh = c - (c - b)
    bl = b - bh
    lo = ((ah * bh - hi) + ah * bl + al * bh) + al * bl
    return hi, lo


def _z_split(x: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``zh = fl(beta*x)`` and ``zl`` with ``zh + zl == beta*x`` exactly where it matters
    (|zh| < 2**14, beyond which exp(-|z|) is 0 or the product overflows); ``zl = 0`` elsewhere."""
    m, e = math.frexp(beta)
    zh = x * beta
    zl = np.zeros_like(zh)
    sel = np.abs(zh) < 2.0 ** 14  # False for NaN and inf
    if sel.any():
        hi, lo = _two_prod(np.ldexp(x[sel], e), m)  # |x * 2**e| < 2**15: no overflow in the split
        zh[sel] = hi
        zl[sel] = lo
    return zh, zl


def _log_expm1_near_root(y: np.ndarray, beta: float, wide: np.dtype) -> np.ndarray:
    """``log(expm1(beta*y))`` for ``beta*y`` near ln 2, with ``d = beta*y - ln 2`` formed exactly.

    ``log(expm1(ln2 + d)) = log1p(2*expm1(d))``, accurate to relative rounding once ``d`` is.
    """
    # Bring y*beta to y'*m with m = mantissa of beta in [0.5, 1): y' stays near 1, so the
    # Veltkamp split cannot overflow even for beta = 1e-300 (scaling by 2**e is exact here).
    m, e = math.frexp(beta)
    hi, lo = _two_prod(np.ldexp(y.astype(np.float64), e), m)  # y*beta == hi + lo exactly
    # hi is within [0.44, 0.94], inside [A/2, 2A]: hi - A is exact (Sterbenz).
    d = (hi - _LN2_A).astype(wide)
    d = ((d + lo.astype(wide)) - wide.type(_LN2_B)) - wide.type(_LN2_C)
    return np.log1p(2 * np.expm1(d))


def _chunk(func: str, ins: list[np.ndarray], out: np.ndarray, bi, ti, bw, beta: float) -> None:
    """Evaluate one contiguous chunk. ``bi``/``ti``: beta/threshold in the input type; ``bw``: wide."""
    x = ins[-1]
    wide = bw.dtype
    mask = (x * bi) > ti  # the threshold test, in the input precision (as torch)
    xw = x.astype(wide)
    zw = xw * bw
    if func != "softplus_inverse":
        e = np.exp(-np.abs(zw))
        if x.dtype == np.float64 and wide != x.dtype:
            # zw = beta*x rounded to 64 bits is off by |z|*2**-64, which exp() turns into a
            # relative error of |z|*2**-64 (0.3 ULP at z = -600). Use z = zh + zl exactly instead:
            # exp(-|z|) = exp(-|zh|) * (1 - sign(zh)*zl), zl <= 2**-53 |zh| (the rest is < 2**-100).
            zh, zl = _z_split(x, beta)
            zw = zh.astype(wide)
            e = np.exp(-np.abs(zw)) * (1 - np.sign(zw) * zl.astype(wide))
    if func == "softplus":
        r = np.maximum(xw, 0) + np.log1p(e) / bw
        keep = x
    elif func == "softplus_inverse":
        r = xw + np.log(-np.expm1(-zw)) / bw
        r[~(zw > 0)] = np.nan  # y <= 0, -0.0 and -inf included; NaN stays NaN
        band = (zw > _ROOT_LO) & (zw < _ROOT_HI)
        if band.any():
            r[band] = _log_expm1_near_root(x[band], beta, wide) / bw
        keep = x
    else:
        r = np.where(zw >= 0, 1 / (1 + e), e / (1 + e))
        if func == "softplus_grad":
            keep = np.ones((), x.dtype)
        else:  # backward: literally g * softplus_grad(x), in the output precision
            # (as PyTorch: inf * a derivative that underflows to 0 is NaN). The IEEE product of
            # g and the correctly rounded derivative is itself correctly rounded.
            g = ins[0]
            r = g * r.astype(x.dtype)
            keep = g
    np.copyto(out, np.where(mask, keep, r.astype(out.dtype)))


def run(func: str, arrays: tuple[np.ndarray, ...], out: np.ndarray,
        beta: float, threshold: float, nthreads: int) -> None:
    """Compute ``func`` of ``arrays`` into ``out`` (the backend protocol; ``nthreads`` is ignored).

    ``arrays`` are float32 or float64 (equal to ``out.dtype``) of shapes broadcasting to
    ``out.shape``, any strides; an input may be ``out`` itself.
    """
    if func not in FUNCS:
        raise ValueError(f"unknown func {func!r}")
    dt = out.dtype
    wide = _WIDE[dt]
    with np.errstate(all="ignore"):
        bi, ti = dt.type(beta), dt.type(threshold)
        bw = wide.type(bi)
        # Buffered external-loop iteration: chunks of at most CHUNK elements, any strides and
        # broadcasting handled by nditer; identical in/out memory is read before it is written.
        it = np.nditer(
            [*arrays, out],
            flags=["external_loop", "buffered", "zerosize_ok", "refs_ok"],
            op_flags=[["readonly"]] * len(arrays) + [["writeonly"]],
            buffersize=CHUNK,
        )
        with it:
            for ops in it:
                _chunk(func, list(ops[:-1]), ops[-1], bi, ti, bw, float(bi))


def evaluate(func: str, *arrays, beta: float = 1.0, threshold: float = math.inf) -> np.ndarray:
    """Oracle helper for tests: ``func`` of float16/32/64 arrays, result in the inputs' dtype.

    float16 is computed in float32 (as the public API does) and rounded to float16.
    """
    arrs = [np.asarray(a) for a in arrays]
    dt = np.result_type(*arrs)
    if dt.kind != "f" or dt.itemsize > 8:
        raise TypeError(f"evaluate() takes float16/32/64, got {dt}")
    cdt = np.dtype(np.float32) if dt == np.float16 else dt.newbyteorder("=")
    arrs = [np.asarray(a, dtype=cdt) for a in arrs]
    shape = np.broadcast_shapes(*(a.shape for a in arrs))
    out = np.empty(shape, cdt)
    run(func, tuple(arrs), out, float(beta), float(threshold), 1)
    return out.astype(dt.newbyteorder("="), copy=False)
