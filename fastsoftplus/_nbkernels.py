"""Scalar softplus kernels for Numba: the same algorithm, step for step, as ``_cy/kernels.h``.

Every public function here is ``@njit(inline="always")`` and branch-free (conditional expressions
become LLVM ``select``), so a loop over it vectorizes; nothing calls libm.  ``threshold`` is ``inf``
for "no cut-off".  The algorithm and its error budget are described in ``_constants.py``.

    softplus_f64(x, beta, threshold)     softplus_f32(x, beta, threshold)
    grad_f64(x, beta, threshold)         grad_f32(x, beta, threshold)
    backward_f64(g, x, beta, threshold)  backward_f32(g, x, beta, threshold)
    inverse_f64(y, beta, threshold)      inverse_f32(y, beta, threshold)

float64 goes through double-double intermediates (error well under 1 ulp; softplus and sigmoid:
a double-double table and short series instead of exp and log); float32 is evaluated
in float64 with shorter polynomials and rounded once, except for beta == 1 (the loops' common
case): softplus1_f32, grad1_f32 and backward1_f32 compute in float32 with float-float corrections
(twice the SIMD lanes; max 0.82 ulp).  softplus1p_f32/f64, grad1p_*, backward1p_*: the plain
variants (the same bits for inputs in the plain range of _constants.py, without edge handling),
which the loops of _numba.py pick per block, testing the range with ``outside``/``within``.
"""
import math

import numpy as np
from llvmlite import ir
from numba import carray, njit as _njit
from numba.core import types
from numba.extending import intrinsic

from ._constants import (
    EXP_ARG_MIN, EXP_C, EXP_CF32, EXP_LITE_ARG_MIN, EXP_C32, F32_EXP_ARG_MIN, F32_INV_LN2, F32_LN2_HI, F32_LN2_LO,
    F32_ROUND_SHIFT, F32_SCALE_MIN_EXP, F32_SUB_SCALE_EXP, F32_TAIL_Q_MIN, F32_TINY, IDENTITY_ABOVE, INV_LN2, LN2_HI, LN2_LO, LN2_LO2, LOG_C, LOG_C32, LOG_CF32,
    LOG_SCALE_BELOW, LOG_U_MIN, PLAIN_BLOCK, PLAIN_MIN_F32, PLAIN_MIN_F64, ROUND_SHIFT, SCALE_UP_EXP, SP_EXPM1_C, SP_LOG1P_C,
    SP_TAB_LEN, SP_TAB_SCALE, SP_TAB_SHIFT, SQRT2, SQRT2_M1, generated_tables,
)

#: Kernels are only ever inlined; error_model="numpy" makes 1/0 follow IEEE instead of raising,
#: so no exception path blocks vectorization.
def njit(*, inline):
    return _njit(inline=inline, error_model="numpy")


_INF = math.inf
_LN2 = LN2_HI + LN2_LO
_SHIFT_BITS = int(np.float64(ROUND_SHIFT).view(np.int64))
_SCALE_UP = 2.0 ** SCALE_UP_EXP
#: The float64 softplus/sigmoid table (numba freezes global arrays into the compiled code).
_SP_L_HI, _SP_L_LO, _SP_SIGMA, _SP_SIGMA_LO = map(np.array, map(generated_tables().get, (
    "SP_L_HI", "SP_L_LO", "SP_SIGMA", "SP_SIGMA_LO")))
_SP_TAB_JMAX = np.uint64(SP_TAB_LEN - 1)


@intrinsic
def fma(typingctx, a, b, c):
    """Fused multiply-add a*b + c with one rounding (``llvm.fma``: vfmadd on FMA hardware)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


#: The LLVM function attribute that wide_vectors() sets.
PREFER_512 = '"prefer-vector-width"="512"'


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM vectorize the calling function with 512-bit registers where the CPU has AVX-512.

    LLVM's tuning for Intel's AVX-512 cores (skylake-avx512 ... sapphirerapids, rocketlake) prefers
    256-bit vectors, to spare mixed workloads the clock drop of 512-bit code; GCC (the C loops)
    uses 512 bits. For these compute-bound loops 512 bits measured faster on the CI machine's Xeon
    (LLVM host CPU "rocketlake"), one thread, n = 1e5, ns/element 256 -> 512 bits: softplus
    float32 2.89 -> 2.40, grad float32 1.80 -> 1.44, softplus float64 14.2 -> 8.7, grad float64
    6.8 -> 3.2 (the double-double float64 kernels of the time). A CPU without AVX-512 keeps its
    widest legal vectors: the attribute is a preference."""
    def codegen(context, builder, signature, args):
        # llvmlite's attribute set checks names against a fixed list without key="value" pairs:
        # add to the underlying set, which is written out verbatim in the function's definition
        set.add(builder.function.attributes, PREFER_512)
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _as_f64(typingctx, bits):
    """Reinterpret the bits of an int64 as a float64 (LLVM bitcast; vectorizes, allocates nothing)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(context.cast(builder, args[0], bits, types.int64), ir.DoubleType())

    return types.float64(bits), codegen


@intrinsic
def _as_i64(typingctx, v):
    """Reinterpret the bits of a float64 as an int64."""
    if v != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(v), codegen


@intrinsic
def _pow2f(typingctx, kf):
    """2**kf as a float32, for an integer-valued float32 kf in [-126, 127] (exponent field)."""
    if kf != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        k = builder.fptosi(args[0], i32)
        return builder.bitcast(builder.shl(builder.add(k, ir.Constant(i32, 127)), ir.Constant(i32, 23)),
                               ir.FloatType())

    return types.float32(kf), codegen


@njit(inline="always")
def _horner(x, c):
    acc = c[len(c) - 1]
    for i in range(len(c) - 2, -1, -1):
        acc = fma(acc, x, c[i])
    return acc


def _estrin_source(n: int, name: str) -> str:
    """Python source of ``name(x, c)``: the polynomial c[0] + c[1]*x + ... + c[n-1]*x**(n-1) by
    Estrin's scheme, the same tree as kernels.h's fsp_estrin (pairs with x, then with x**2, x**4,
    ...; an odd one out moves up a level unchanged). Written out, as numba has no fixed-size
    scratch array that stays in registers."""
    terms = [f"c[{i}]" for i in range(n)]
    lines = [f"def {name}(x, c):", "    xx0 = x"]
    level = 0
    while len(terms) > 1:
        pairs = []
        for i in range(len(terms) // 2):
            lines.append(f"    p{level}_{i} = fma({terms[2 * i + 1]}, xx{level}, {terms[2 * i]})")
            pairs.append(f"p{level}_{i}")
        terms = pairs + terms[len(terms) - len(terms) % 2:]
        if len(terms) > 1:
            lines.append(f"    xx{level + 1} = xx{level} * xx{level}")
        level += 1
    lines.append(f"    return {terms[0]}")
    return "\n".join(lines) + "\n"


def _make_estrin(n: int, name: str):
    namespace = {"fma": fma}
    exec(_estrin_source(n, name), namespace)  # generated from n alone, no outside input
    return njit(inline="always")(namespace[name])


#: Estrin evaluations for the long float64 series (see kernels.h fsp_estrin for why).
_estrin_exp = _make_estrin(len(EXP_C), "_estrin_exp")
_estrin_log = _make_estrin(len(LOG_C), "_estrin_log")


@njit(inline="always")
def _two_sum(a, b):
    """a + b = s + e exactly (Knuth), any magnitudes."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(inline="always")
def _fast_two_sum(a, b):
    """a + b = s + e exactly, for |a| >= |b| (Dekker)."""
    s = a + b
    return s, b - (s - a)


@njit(inline="always")
def _pow2(k):
    """2**k as two normal factors, for k in [-2044, 2046] (2**k itself may be subnormal)."""
    k1 = k >> 1
    return _as_f64((k1 + 1023) << 52), _as_f64((k - k1 + 1023) << 52)


@njit(inline="always")
def _exp_core(a, precise):
    """exp(a) = 2**k * (1 + p_hi + p_lo) for a in [EXP_ARG_MIN, 700]; p relative error ~2**-55.

    ``precise`` (a compile-time constant) reduces with ln2 to 150 bits instead of 95, for
    log(expm1(z)) next to its root z = ln2, where r = z - ln2 is itself tiny.
    """
    kd_s = fma(a, INV_LN2, ROUND_SHIFT)
    kd = kd_s - ROUND_SHIFT
    k = _as_i64(kd_s) - _SHIFT_BITS
    r_hi = a - kd * LN2_HI  # exact: kd*LN2_HI has <= 53 bits, Sterbenz for the difference
    r_lo = -kd * LN2_LO
    if precise:  # r_hi - kd*(LN2_LO + LN2_LO2) with the product's rounding error kept
        r_hi, r_err = _two_sum(r_hi, r_lo)
        r_lo = (r_err - fma(kd, LN2_LO, r_lo)) - kd * LN2_LO2
    r = r_hi + r_lo
    rr = (r_hi - r) + r_lo
    q = r * fma(r, _estrin_exp(r, EXP_C), rr) + rr  # exp(r + rr) - 1 - r, to first order in rr
    p_hi, p_lo = _fast_two_sum(r, q)
    return k, p_hi, p_lo


@njit(inline="always")
def _atanh_log(m, n_hi, n_lo, d_hi, d_lo):
    """m*ln2 + 2*atanh(n/d) as a double-double, for |n/d| <= 3 - 2*sqrt(2)."""
    inv = 1.0 / d_hi
    s = n_hi * inv
    s_lo = ((fma(-s, d_hi, n_hi) + n_lo) - s * d_lo) * inv  # exact residual, one division in all
    u = s * s
    u_p = u if u > LOG_U_MIN else LOG_U_MIN  # no subnormal u**8 (_constants.py)
    tail = s * u * _estrin_log(u_p, LOG_C)
    hi, lo = _fast_two_sum(m * LN2_HI, 2.0 * s)
    return hi, lo + (m * LN2_LO + 2.0 * (tail + s_lo * (1.0 + u)))


@njit(inline="always")
def _tab_reduce(z, edges):
    """The table reduction of _constants.py (SP_ section), as kernels.h's fsp_tab_reduce: a = -|z|
    (clamped at EXP_ARG_MIN) = kd*ln2 + a_j + d, a_j = -j/SP_TAB_SCALE, kd = 0 unless a is below
    -SP_TAB_SHIFT - ln2/2. Returns d, j and 2**kd as two normal factors. ``edges`` False (a
    compile-time constant): z in the plain range only (PLAIN_MIN_F64), kd = 0, the same bits (the
    full version's last term -kd*LN2_LO is -0.0 there, which changes no sum)."""
    a = -abs(z)
    ap = a
    kd = 0.0
    s1 = s2 = 1.0
    if edges:  # edges False: the plain range (PLAIN_MIN_F64), where kd = 0
        a = a if a > EXP_ARG_MIN else EXP_ARG_MIN
        b = a + SP_TAB_SHIFT
        b = b if b < 0.0 else 0.0
        kd_s = fma(b, INV_LN2, ROUND_SHIFT)
        kd = kd_s - ROUND_SHIFT
        ap = a - kd * LN2_HI  # exact: kd*LN2_HI has <= 53 bits, a' is a multiple of 2**-47
        s1, s2 = _pow2(_as_i64(kd_s) - _SHIFT_BITS)
    jd_s = ap * -float(SP_TAB_SCALE) + ROUND_SHIFT  # j = round(-a' * SCALE)
    jd = jd_s - ROUND_SHIFT
    d = ap + jd * (1.0 / SP_TAB_SCALE)  # a' - a_j is exact
    j = _as_i64(jd_s) - _SHIFT_BITS
    if not edges:  # j <= SP_TAB_SHIFT*SCALE in the plain range, where this changes nothing; for
        # any other z (NaN, huge) it keeps the loads inside the table: a plain loop may run a
        # block it then recomputes (_numba._ser_softplus). One unsigned min.
        j = np.int64(min(np.uint64(j), _SP_TAB_JMAX))
    # with kd = 0 the last term is -0.0, which changes no sum: the plain range skips it
    return (d + -kd * LN2_LO if edges else d), j, s1, s2


@njit(inline="always")
def _tab_w(d, j):
    """w = sigmoid(a_j) * expm1(d), for the reduced d: 1 + e**a = (1 + e**a_j)(1 + w)."""
    return _SP_SIGMA[j] * fma(d * d, _horner(d, SP_EXPM1_C), d)


@njit(inline="always")
def _softplus_tab(z, edges):
    """softplus(z) in double from the table (L(a) = log1p(e**a), a = -|z|): L(a_j + d) = L(a_j) +
    log1p(w), and below a = -SP_TAB_SHIFT - ln2/2, 2**k * L(a'). For z < IDENTITY_ABOVE, -inf included
    (the caller handles NaN, +inf and the identity range, so no invalid-operation flag is raised).
    ``edges`` False: z in the plain range only, without the 2**k steps (the same bits)."""
    d, j, s1, s2 = _tab_reduce(z, edges)
    w = _tab_w(d, j)
    lw = fma(w * w, _horner(w, SP_LOG1P_C), w)
    # max(z, 0) + L_HI exactly, then the rest; times 2**k, which is 1 wherever z > 0, and rounds
    # only where the result is subnormal (two normal factors)
    s, e = _two_sum(z if z > 0.0 else 0.0, _SP_L_HI[j])
    res = s + (e + (_SP_L_LO[j] + lw))
    return res * s1 * s2 if edges else res


@njit(inline="always")
def _sigmoid_tab(z, edges):
    """sigmoid(z) as a double-double from the same table, a = -|z|: sigmoid(a_j + d) =
    sigmoid(a_j) + w (1 - sigmoid(a_j)) / (1 + w), one division; 1 minus that for z >= 0. Below
    a = -SP_TAB_SHIFT - ln2/2 (k < 0): for z < 0, 2**k * sigmoid(a') rounded once, lo = 0; for z > 0,
    exactly 1 (1 - e**-z rounds to 1 from z = 37.5 on). ``edges`` False: the plain range only, as
    for _softplus_tab (k = 0: nothing is scaled)."""
    d, j, s1, s2 = _tab_reduce(z, edges)
    w = _tab_w(d, j)
    sig = _SP_SIGMA[j]
    corr = (w * (1.0 - sig)) / (1.0 + w) + _SP_SIGMA_LO[j]
    g_hi, g_lo = _fast_two_sum(sig, corr)  # |corr| < sig/30
    h, l = _fast_two_sum(1.0, -g_hi)  # g_hi <= 1/2
    pos = z >= 0.0
    if not edges:
        return (h if pos else g_hi), (l - g_lo if pos else g_lo)
    scaled = s1 < 1.0  # k < 0
    # times 0 for z >= 0, not 2**k: an exact 0, no underflowing product where it is not used
    once = (g_hi + g_lo) * s1 * (0.0 if pos else s2)
    neg_hi = once if scaled else g_hi
    neg_lo = 0.0 if scaled else g_lo
    pos_hi = 1.0 if scaled else h
    pos_lo = 0.0 if scaled else l - g_lo
    return (pos_hi if pos else neg_hi), (pos_lo if pos else neg_lo)


@njit(inline="always")
def _log_expm1_dd(z, y, beta):
    """log(expm1(z)) for 0 < z < IDENTITY_ABOVE, within 1 ulp even near the root z = ln2:
    expm1 keeps 2**k - 1 and 2**k * p apart, so the cancellation costs nothing."""
    k, p_hi, p_lo = _exp_core(z, True)
    s1, s2 = _pow2(k)
    sc = s1 * s2
    e_hi, e_lo = _two_sum(sc - 1.0, sc * p_hi)
    e_lo += sc * p_lo
    # expm1(z) == z below LOG_SCALE_BELOW, where z = beta*y may have lost bits to underflow (or be
    # 0): take the exact product beta * (y * 2**SCALE_UP_EXP) instead, normal and kept as hi + lo.
    # Both factors are scaled by 2**SCALE_UP_EXP (beta only when < 1) so the product is normal
    # for any y, beta >= 2**-1074 and cannot overflow (y*beta < 2**-1000 here).
    small = e_hi < LOG_SCALE_BELOW
    y_up = (y if y < 1.0 else 1.0) * _SCALE_UP
    b_up = beta * _SCALE_UP if beta < 1.0 else beta
    b_hi = y_up * b_up
    e_hi = b_hi if small else e_hi
    e_lo = fma(y_up, b_up, -b_hi) if small else e_lo
    up = SCALE_UP_EXP * (2 if beta < 1.0 else 1)
    eb = ((_as_i64(e_hi * SQRT2) >> 52) & 0x7FF) - 1023  # e_hi * 2**-eb in [1/sqrt2, sqrt2)
    sm = _as_f64((1023 - eb) << 52)
    f_hi = e_hi * sm - 1.0  # exact (Sterbenz)
    f_lo = e_lo * sm
    d_hi, d_lo = _fast_two_sum(2.0, f_hi)
    m = _as_f64(eb - (up if small else 0) + _SHIFT_BITS) - ROUND_SHIFT  # int -> double
    l_hi, l_lo = _atanh_log(m, f_hi, f_lo, d_hi, d_lo + f_lo)
    return l_hi + l_lo


# ---------------------------------------------------------------- float64
# z = beta*x is rounded as torch rounds it. A NaN z is replaced by 0 before any ordered comparison
# (which would raise the invalid-operation flag NumPy reports) and restored at the end.


@njit(inline="always")
def _quiet(z):
    return 0.0 if z != z else z


@njit(inline="always")
def _times_dd(g, q, q_lo):
    """g * (q + q_lo); an infinite g takes g*q alone: g*q_lo would add inf - inf (or inf*0)."""
    return fma(g, q, g * q_lo) if abs(_quiet(g)) < _INF else g * q


@njit(inline="always")
def softplus_f64(x, beta, threshold):
    z = x * beta
    zs = _quiet(z)
    res = _softplus_tab(zs if zs < IDENTITY_ABOVE else 0.0, True) / beta
    res = x if zs >= IDENTITY_ABOVE else res
    res = x if zs > threshold else res
    return z if z != z else res


@njit(inline="always")
def grad_f64(x, beta, threshold):
    z = x * beta
    zs = _quiet(z)
    q, q_lo = _sigmoid_tab(zs, True)
    res = 1.0 if zs > threshold else q + q_lo
    return z if z != z else res


@njit(inline="always")
def backward_f64(g, x, beta, threshold):
    z = x * beta
    zs = _quiet(z)
    q, q_lo = _sigmoid_tab(zs, True)
    res = _times_dd(g, q, q_lo)
    res = g if zs > threshold else res
    return z if z != z else res


# The plain variants, beta == 1 (the loops pick them for blocks whose every x lies in the plain
# range of _constants.py, PLAIN_MIN_F64 < x < min(IDENTITY_ABOVE, threshold)): the bits of the
# full kernels, without their clamps, 2**k scaling and NaN/identity/threshold selects.

@njit(inline="always")
def softplus1p_f64(x, threshold):
    return _softplus_tab(x, False)


@njit(inline="always")
def grad1p_f64(x, threshold):
    q, q_lo = _sigmoid_tab(x, False)
    return q + q_lo


@njit(inline="always")
def backward1p_f64(g, x, threshold):
    q, q_lo = _sigmoid_tab(x, False)
    return _times_dd(g, q, q_lo)


@njit(inline="always")
def _inverse_dd(zs, ys, beta):
    """log(expm1(z)) for z = beta*y (non-NaN zs, ys), z itself past IDENTITY_ABOVE, NaN for y <= 0."""
    valid = ys > 0.0
    w = zs if zs < IDENTITY_ABOVE else 1.0
    res = _log_expm1_dd(w if valid else 1.0, ys if valid else 1.0, beta)
    res = zs if zs >= IDENTITY_ABOVE else res
    return res if valid else math.nan


@njit(inline="always")
def inverse_f64(y, beta, threshold):
    z = y * beta
    zs = _quiet(z)
    res = _inverse_dd(zs, _quiet(y), beta) / beta
    res = y if zs >= IDENTITY_ABOVE else res
    res = y if zs > threshold else res
    return z if z != z else res


# ---------------------------------------------------------------- float32 (evaluated in float64)


@njit(inline="always")
def _expm1_reduced(a):
    """exp(a) = 2**k * (1 + p): (kd_s, p), p = expm1(r), r = a - k*ln2, to 2**-31 relative (enough
    for a float32 result), kd_s = k + ROUND_SHIFT, whose low bits are k."""
    kd_s = fma(a, INV_LN2, ROUND_SHIFT)
    kd = kd_s - ROUND_SHIFT
    r = fma(-kd, LN2_LO, fma(-kd, LN2_HI, a))
    return kd_s, fma(r * r, _horner(r, EXP_C32), r)


@njit(inline="always")
def _mul_pow2k(v, kd_s):
    """v * 2**k for the k that kd_s carries, by adding k to v's exponent bits (k << 52 is the low
    bits of kd_s shifted up); v and the result must be normal."""
    return _as_f64(_as_i64(v) + (_as_i64(kd_s) << 52))


@njit(inline="always")
def _exp_lite(a):
    """exp(a) for a <= 0 in double, relative error < 2**-31. a is clamped at EXP_LITE_ARG_MIN,
    where exp is far below any float32, so 2**k stays normal."""
    kd_s, p = _expm1_reduced(a if a > EXP_LITE_ARG_MIN else EXP_LITE_ARG_MIN)
    return _mul_pow2k(1.0 + p, kd_s)


@njit(inline="always")
def _softplus_lite(z):
    """softplus(z) in double to ~2**-31, for finite z < IDENTITY_ABOVE."""
    t = _exp_lite(-abs(z))
    c = 1.0 if t > SQRT2_M1 else 0.0  # 1: log(1 + t) = ln2 + log1p((t - 1)/2), s = (t - 1)/(t + 3)
    s = (t - c) / ((t + 2.0) + c)
    u = s * s
    log1p_t = fma(c, _LN2, fma(2.0 * s * u, _horner(u, LOG_C32), 2.0 * s))
    return (z if z > 0.0 else 0.0) + log1p_t


@njit(inline="always")
def _sigmoid_lite(z):
    t = _exp_lite(-abs(z))
    return (1.0 if z >= 0.0 else t) / (1.0 + t)


@njit(inline="always")
def _log_expm1_lite(z):
    """log(expm1(z)) in double to ~2**-31 relative, for 0 < z < IDENTITY_ABOVE, z >= 2**-298.

    expm1(z) = (2**k - 1) + 2**k * p kept as hi + lo (exact), so next to the root z = ln2 the log
    sees f = 2p itself, not 1 + 2p rounded (the C kernel's comment has the error budget)."""
    kd_s, p = _expm1_reduced(z)
    sc = _mul_pow2k(1.0, kd_s)
    e_hi, e_lo = _fast_two_sum(sc - 1.0, sc * p)
    eb = ((_as_i64(e_hi * SQRT2) >> 52) & 0x7FF) - 1023  # e_hi * 2**-eb in [1/sqrt2, sqrt2)
    sm = _as_f64((1023 - eb) << 52)
    f = (e_hi * sm - 1.0) + e_lo * sm  # e_hi*sm - 1 exact (Sterbenz)
    s = f / (2.0 + f)
    u = s * s
    m = _as_f64(eb + _SHIFT_BITS) - ROUND_SHIFT  # int -> double
    return fma(m, _LN2, fma(2.0 * s * u, _horner(u, LOG_C32), 2.0 * s))


@njit(inline="always")
def _inverse_lite(z):
    """log(expm1(z)) for a non-NaN z = beta*y of float32: z past IDENTITY_ABOVE, NaN for z <= 0."""
    valid = z > 0.0
    w = z if z < IDENTITY_ABOVE else 1.0
    res = _log_expm1_lite(w if valid else 1.0)
    res = z if z >= IDENTITY_ABOVE else res
    return res if valid else math.nan


# float32: the product of two floats is exact in double, so zd is beta*x exactly; the threshold is
# still decided on the float32 product, as torch does.


@njit(inline="always")
def softplus_f32(x, beta, threshold):
    b = np.float64(beta)
    zd = _quiet(np.float64(x) * b)
    res = np.float32(_softplus_lite(zd if zd < IDENTITY_ABOVE else 0.0) / b)
    res = x if zd >= IDENTITY_ABOVE else res
    res = x if _quiet(x * beta) > threshold else res
    return x if x != x else res


@njit(inline="always")
def grad_f32(x, beta, threshold):
    res = np.float32(_sigmoid_lite(_quiet(np.float64(x) * np.float64(beta))))
    res = np.float32(1.0) if _quiet(x * beta) > threshold else res
    return x if x != x else res


@njit(inline="always")
def backward_f32(g, x, beta, threshold):
    # sigmoid rounded to float32 first (as torch computes it), so g*0 stays NaN for g = inf; the
    # product of two floats is then exact in double and rounds once.
    sig = np.float32(_sigmoid_lite(_quiet(np.float64(x) * np.float64(beta))))
    res = np.float32(np.float64(g) * np.float64(sig))
    res = g if _quiet(x * beta) > threshold else res
    return x if x != x else res


@njit(inline="always")
def inverse_f32(y, beta, threshold):
    b = np.float64(beta)
    zd = _quiet(np.float64(y) * b)
    res = np.float32(_inverse_lite(zd) / b)
    res = y if zd >= IDENTITY_ABOVE else res
    res = y if _quiet(y * beta) > threshold else res
    return y if y != y else res


# ---------------------------------------------------------------- float32 in float32, beta == 1
# Algorithm and error budget: the F32_ section of _constants.py. Every literal is a float32
# constant: a Python float would promote the whole expression to float64.

_F0, _F1, _F2 = np.float32(0.0), np.float32(1.0), np.float32(2.0)
_F_SHIFT, _F_INV_LN2 = np.float32(F32_ROUND_SHIFT), np.float32(F32_INV_LN2)
_F_LN2_HI, _F_LN2_LO = np.float32(F32_LN2_HI), np.float32(F32_LN2_LO)
_F_ARG_MIN, _F_TINY, _F_IDENTITY = np.float32(F32_EXP_ARG_MIN), np.float32(F32_TINY), np.float32(IDENTITY_ABOVE)
_F_Q_MIN = np.float32(F32_TAIL_Q_MIN)
_F_KC_MIN = np.float32(F32_SCALE_MIN_EXP)
_F_SUB_UP, _F_SUB_DOWN = np.float32(F32_SUB_SCALE_EXP), np.float32(2.0 ** -F32_SUB_SCALE_EXP)
_EXP_CF32 = tuple(np.float32(c) for c in EXP_CF32)
_LOG_CF32 = tuple(np.float32(c) for c in LOG_CF32)


@njit(inline="always")
def _exp_f32(a, a_once, edges):
    """exp(a) for a in [F32_EXP_ARG_MIN, 0]: (e_hi, e_lo) float-float, valid where e >= F32_TINY
    (and normal everywhere); once = e rounded once, right down to subnormals, where a_once >
    F32_EXP_ARG_MIN, else 0 (a caller that does not need it passes F32_EXP_ARG_MIN: no underflow).
    ``edges`` False: a in (PLAIN_MIN_F32, 0] only; no clamp, and once is not computed (0)."""
    kf = fma(a, _F_INV_LN2, _F_SHIFT) - _F_SHIFT
    r = fma(kf, -_F_LN2_HI, a)  # exact (see _constants.py)
    rl = kf * -_F_LN2_LO  # exp(r + rl) = exp(r)(1 + rl)
    tail = fma(r * r, _horner(r, _EXP_CF32), fma(rl, r, rl))
    s_hi, s_lo = _fast_two_sum(_F1, r)
    v_hi, v_lo = _fast_two_sum(s_hi, s_lo + tail)  # renormalised: |v_lo| <= ulp(v_hi)/2
    kc = kf if not edges or kf > _F_KC_MIN else _F_KC_MIN  # keeps e_hi, e_lo finite below
    sc = _pow2f(kc)
    if not edges:
        return v_hi * sc, v_lo * sc, _F0
    # times 0, not 2**-64, where once is not wanted: an exact 0, no underflowing product
    down = _F_SUB_DOWN if a_once > _F_ARG_MIN else _F0
    return v_hi * sc, v_lo * sc, v_hi * _pow2f(kf + _F_SUB_UP) * down


@njit(inline="always")
def _softplus1_f32_e(x, threshold, edges):
    """softplus(x) for float32 x, beta == 1, evaluated in float32. ``edges`` False: the plain
    variant, for x in (PLAIN_MIN_F32, min(IDENTITY_ABOVE, threshold)) only (the loops check each
    block): the same bits without the clamps, the once-rounded path and the final selects."""
    # min(x, IDENTITY_ABOVE) with a NaN becoming IDENTITY_ABOVE: no NaN or inf reaches the
    # arithmetic (no inf - inf); lanes with x >= IDENTITY_ABOVE or NaN return x at the end
    zc = x if not edges or x < _F_IDENTITY else _F_IDENTITY
    a = -abs(zc)
    e_hi, e_lo, once = _exp_f32(a if not edges or a > _F_ARG_MIN else _F_ARG_MIN, a, edges)
    # log1p(e) = 2 atanh(q), q = e/(2 + e) <= 1/3, kept as q + q_lo
    d_hi, d_lo = _fast_two_sum(_F2, e_hi)
    d_lo += e_lo
    inv = _F1 / d_hi
    q = e_hi * inv
    q_lo = fma(-q, d_lo, fma(-q, d_hi, e_hi) + e_lo) * inv
    qc = q if q > _F_Q_MIN else _F_Q_MIN  # u, q*u stay normal
    u = qc * qc
    # atanh(q + q_lo) = atanh(q) + q_lo/(1 - q**2)
    l_lo = _F2 * fma(q * u, _horner(u, _LOG_CF32), fma(q_lo, u, q_lo))
    l_hi = _F2 * q
    zp = zc if zc > _F0 else _F0
    big = zp if zp > l_hi else l_hi
    small = l_hi if zp > l_hi else zp
    s, err = _fast_two_sum(big, small)
    res = s + (err + l_lo)
    if not edges:
        return res
    tiny = res if zc > _F0 else once  # log1p(e) == e to 2**-41: keeps subnormals once-rounded
    res = tiny if once < _F_TINY else res
    res = res if x < _F_IDENTITY else x  # and NaN
    return x if x > threshold else res


@njit(inline="always")
def softplus1_f32(x, threshold):
    return _softplus1_f32_e(x, threshold, True)


@njit(inline="always")
def softplus1p_f32(x, threshold):
    return _softplus1_f32_e(x, threshold, False)


@njit(inline="always")
def _sigmoid_f32(x, edges):
    """sigmoid(x) for float32 x: 1/(1 + e) for x >= 0, e/(1 + e) below, e = exp(-|x|), the
    quotient corrected by its exact residual (one division). A NaN x gives some finite value
    (a = NaN clamps to F32_EXP_ARG_MIN); the callers return x. ``edges`` False: x in the plain
    range only."""
    a = -abs(x)
    pos = x >= _F0  # once only for x < 0: for x >= 0 it could be subnormal, unused
    e_hi, e_lo, once = _exp_f32(a if not edges or a > _F_ARG_MIN else _F_ARG_MIN,
                                _F_ARG_MIN if pos else a, edges)
    d_hi, d_lo = _fast_two_sum(_F1, e_hi)
    d_lo += e_lo
    n_hi = _F1 if pos else e_hi
    n_lo = _F0 if pos else e_lo
    inv = _F1 / d_hi
    q = n_hi * inv
    res = q + fma(-q, d_lo, fma(-q, d_hi, n_hi) + n_lo) * inv
    if not edges:
        return res
    tiny = res if pos else once  # e/(1 + e) == e to 2**-40: subnormals once-rounded
    return tiny if once < _F_TINY else res


@njit(inline="always")
def grad1_f32(x, threshold):
    res = _sigmoid_f32(x, True)
    res = _F1 if x > threshold else res
    return x if x != x else res


@njit(inline="always")
def backward1_f32(g, x, threshold):
    res = g * _sigmoid_f32(x, True)  # the product of two floats rounds once, as in backward_f32
    res = g if x > threshold else res
    return x if x != x else res


# the plain variants (see _softplus1_f32_e)
@njit(inline="always")
def grad1p_f32(x, threshold):
    return _sigmoid_f32(x, False)


@njit(inline="always")
def backward1p_f32(g, x, threshold):
    return g * _sigmoid_f32(x, False)


# ---------------------------------------------------------------- the plain range (loops, beta == 1)

@njit(inline="always")
def within(v, lo, hi):
    """True if every element of the 1-d array v (a block from ``stage``) lies in (lo, hi), False
    if any does not or is NaN: one compare and OR per element, no early exit (which would keep
    the loop scalar)."""
    bad = False
    for i in range(v.shape[0]):
        bad |= outside(v[i], lo, hi)
    return not bad


@njit(inline="always")
def outside(v, lo, hi):
    """True if v does not lie in (lo, hi) or is NaN (within's test for one element)."""
    return not ((v > lo) & (v < hi))


@njit(inline="always")
def disjoint(a, b):
    """True if the 1-d arrays a and b share no byte of memory."""
    pa = a.ctypes.data
    pb = b.ctypes.data
    return pa + a.size * a.itemsize <= pb or pb + b.size * b.itemsize <= pa


@njit(inline="always")
def staging(a, out):
    """A PLAIN_BLOCK-long scratch array for the blocks of ``a`` when ``a`` overlaps ``out`` (in
    place), else an empty one: see ``stage``."""
    return np.empty(0 if disjoint(a, out) else PLAIN_BLOCK, a.dtype)


@njit(inline="always")
def stage(a, buf, i0, m):
    """An array ``v`` with ``v[i] == a[i0 + i]`` for ``0 <= i < m``: a view of ``a``, or, where
    ``buf`` (from ``staging``) is not empty, of a copy of the block in ``buf``.

    Reading an in-place block from the copy lets LLVM's runtime overlap check pass, which keeps
    the loops vectorized (reading ``a``, the scalar fallback ran 4-12x slower), and leaves the
    inputs intact for a block that is computed twice (the plain kernel, then the full one). The
    view is made from an address (``numba.carray``, no reference count): a variable that is
    either of two arrays is counted, an atomic NRT_incref/decref per block on the caller's array,
    which the threads share (float32 1e7, 2 threads: 1.0 -> 1.4x ReLU)."""
    if buf.size == 0:
        p = _pointer(a.ctypes.data, i0, a.dtype)
    else:
        for i in range(m):
            buf[i] = a[i0 + i]
        p = _pointer(buf.ctypes.data, 0, a.dtype)
    return carray(p, m)


@intrinsic
def _pointer(typingctx, addr, i, dtype):
    """A pointer to element ``i`` of an array of ``dtype`` at the integer address ``addr``."""
    if not (isinstance(addr, types.Integer) and isinstance(i, types.Integer)
            and isinstance(dtype, types.DType)):
        return None
    ptr = types.CPointer(dtype.dtype)

    def codegen(context, builder, signature, args):
        base = builder.inttoptr(args[0], context.get_value_type(ptr))
        return builder.gep(base, [args[1]])

    return ptr(addr, i, dtype), codegen


_F_PLAIN_MIN = np.float32(PLAIN_MIN_F32)


@njit(inline="always")
def plain_range_f32(threshold):
    """(lo, hi) of the float32 plain range: (PLAIN_MIN_F32, min(IDENTITY_ABOVE, threshold))."""
    return _F_PLAIN_MIN, threshold if threshold < _F_IDENTITY else _F_IDENTITY


@njit(inline="always")
def plain_range_f64(threshold):
    return PLAIN_MIN_F64, threshold if threshold < IDENTITY_ABOVE else IDENTITY_ABOVE
