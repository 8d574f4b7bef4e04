"""The numbers behind every kernel: one source of truth for the Numba and the C backends.

The Numba kernels (``_nbkernels.py``) read these names directly; ``setup.py`` writes every
UPPER_CASE number of this module into the generated C header ``_cy/_constants.h`` as
``FSP_<NAME>`` (floats in hexadecimal, so the C value is bit-identical).

The algorithm (both backends, both precisions) is the stable softplus
``max(z, 0) + log1p(exp(-|z|))``, evaluated so that the final rounding dominates the error:

* ``exp(a) = 2**k * (1 + p)``, ``a = k*ln2 + r``, ``|r| <= ln2/2``, with ``ln2`` split in two so
  ``k*LN2_HI`` is exact (``LN2_HI`` has 42 significant bits, ``|k| < 2**11``); ``p`` is kept as a
  double-double so ``expm1`` and ``1 + exp`` lose nothing to cancellation.
* ``log(1 + f) = m*ln2 + 2*atanh(s)``, ``s = f / (2 + f)``, ``|s| <= 3 - 2*sqrt(2) = 0.1716``, the
  leading ``2*s`` as a double-double and the tail ``2*s**3 * Q(s**2)`` in double.
* float64 softplus and sigmoid (grad, backward) skip both: ``log1p(exp(a))`` and ``sigmoid(a)``
  come from a table at ``a_j = -j/16`` and short series in ``d = a - a_j`` (the SP_ section
  below); exp and log as above serve the inverse and float32 evaluated in float64.

The polynomials are plain Taylor series (coefficients 1/n! and 1/(2j+1), exact to the last bit in
double), truncated where the next term falls below the stated error on the reduced range. float32
softplus/grad/backward with beta == 1 are evaluated in float32 with float-float corrections (the
F32_ section below); the other float32 cases in float64 with shorter series, rounded once.
"""
import math
import struct

#: ln(2) split for exact argument reduction: LN2_HI has its low 11 bits zero (fdlibm's scheme, with
#: 42 bits), LN2_LO = ln(2) - LN2_HI rounded (computed with mpmath at 200 bits).
LN2_HI = float.fromhex("0x1.62e42fefa3800p-1")
LN2_LO = float.fromhex("0x1.ef35793c76730p-45")
#: ln(2) - LN2_HI - LN2_LO rounded (mpmath, 300 bits): the inverse's reduction next to its root.
LN2_LO2 = float.fromhex("0x1.f97b57a079a19p-103")
#: 1/ln(2) rounded to double: only picks k, any error moves r by a few ulps inside the reduced range.
INV_LN2 = float.fromhex("0x1.71547652b82fep+0")
#: 1.5 * 2**52: adding it rounds a double of magnitude < 2**51 to an integer (round-to-nearest).
ROUND_SHIFT = float.fromhex("0x1.8p52")
#: sqrt(2) - 1: where log(1 + t) switches from f = t (m = 0) to f = (t - 1) / 2 (m = 1), keeping
#: 1 + f inside [1/sqrt(2), sqrt(2)].
SQRT2_M1 = float.fromhex("0x1.a827999fcef34p-2")
#: sqrt(2): scales the argument of the general log so its reduced mantissa lies in [1/sqrt2, sqrt2).
SQRT2 = float.fromhex("0x1.6a09e667f3bcdp+0")

#: Lower clamp of the float64 softplus/sigmoid argument a = -|z|: exp(-1100) underflows to 0 even
#: through the two-step scaling, and k stays within [-1523, 0], inside the range 2**k1 * 2**k2
#: can represent (the table reduction, below).
EXP_ARG_MIN = -1100.0
#: The float32 path in float64 (beta != 1) clamps exp's argument here instead: 2**k stays a normal
#: double, applied with one integer add, and t**2, t**3 in the log series stay normal (at the
#: earlier -700 they were subnormal for beta*x in [-372, -354] and [-247, -236]: microcode
#: assists, see F32_TINY). Results do not change: there softplus/beta and sigmoid are at
#: most exp(-210) / 2**-149 < 2**-153 (the smallest float32 beta is 2**-149), 0 in float32, as
#: the exact values are.
EXP_LITE_ARG_MIN = -210.0
#: Where expm1(beta*y) is below this, the inverse takes log of the exact product instead, with y
#: (and beta, when < 1) scaled by 2**SCALE_UP_EXP: then the product is normal for any y, beta down to
#: 2**-1074 (>= 2**-948) and below 2**200.
LOG_SCALE_BELOW = float.fromhex("0x1p-1000")
SCALE_UP_EXP = 600
#: At and above this z, softplus(z) == z and log(expm1(z)) == z to double precision
#: (exp(-40) < ulp(40) / 2**10), so every kernel returns its input there: this keeps the result
#: exact when beta*x overflows, and keeps exp/expm1 away from overflow.
IDENTITY_ABOVE = 40.0

#: exp(r) - 1 - r = r**2 * (EXP_C[0] + EXP_C[1]*r + ...): Taylor, 1/(n+2)!. 13 terms: the first
#: omitted term r**15/15! < 2**-63 for |r| <= ln2/2, below the 2**-56 budget of the double-double
#: path. EXP_C32 (7 terms, first omitted r**9/9! < 2**-32) serves float32 evaluated in double,
#: where any error below 2**-30 keeps the result within 0.5 + 2**-6 ulp of float32.
EXP_C = tuple(1.0 / math.factorial(n) for n in range(2, 15))
EXP_C32 = EXP_C[:7]

#: atanh(s)/s - 1 = s**2 * (LOG_C[0] + LOG_C[1]*s**2 + ...): Taylor, 1/(2j+3). 11 terms: first
#: omitted s**24/25 < 2**-60 (relative to s) for |s| <= 0.1716. LOG_C32 (5 terms): s**12/13 < 2**-34.
LOG_C = tuple(1.0 / (2 * j + 3) for j in range(11))
LOG_C32 = LOG_C[:5]
#: LOG_C is evaluated (by Estrin's scheme, which forms u**8) at max(u, LOG_U_MIN), u = s**2: for
#: tiny s u**8 would be subnormal, and an Intel core takes a microcode assist for each such vector
#: instruction (measured when float64 softplus still went through this log: 2.2x slower at x in
#: [-60, -40]; it now serves the float64 inverse, whose s is tiny where y is large). Below it
#: the series moves by < 2**-66 relative, in a tail that is itself < 2**-64 of the result.
LOG_U_MIN = float.fromhex("0x1p-64")


# ---- float64 softplus and sigmoid by table (both backends) ---------------------------------------
# L(a) = log1p(exp(a)) for a = -|z| <= 0 from a table at a_j = -j/SP_TAB_SCALE:
#     L(a_j + d) = L(a_j) + log1p(w),  w = sigmoid(a_j) * expm1(d),  |d| <= 1/(2*SP_TAB_SCALE),
# since 1 + e**(a_j + d) = (1 + e**a_j) * (1 + w); and sigmoid(a_j + d) = sigmoid(a_j) +
# w * (1 - sigmoid(a_j)) / (1 + w) (grad, backward). L(a_j) and sigmoid(a_j) are double-doubles, so
# two short series (one for sigmoid, plus a division) and table gathers replace the double-double
# exp and the division and double-double log of the general path: serial float64 softplus 5.0 ->
# 2.6-2.8 ns/element (AVX-512, one core).
# Below a = -SP_TAB_SHIFT - ln2/2, a = k*ln2 + a' (k < 0) with a' within ln2/2 of -SP_TAB_SHIFT,
# and L(a) = 2**k * L(a'), sigmoid(a) = 2**k * sigmoid(a') to 2**-64 relative (both are
# t'(1 + O(t')), t' = e**a' < 2**-64).
# Error (both backends, tests/test_accuracy.py): the final rounding plus < 0.1 ulp (max 0.567 ulp
# for normal results of softplus, 0.589 of sigmoid; subnormal ones round twice, in the 2**k
# scaling: max 0.75 ulp).
#: Table step 1/16: |d| <= 1/32, so each series needs 7 terms; 1/32 would save one FMA each for
#: tables twice the size (46 KB, all of L1).
SP_TAB_SCALE = 16
#: a below -45 - ln2/2 is reduced by k*ln2 into a' in [-45 - ln2/2, -45 + ln2/2]: j <= 726 (one
#: spare entry). Must stay above IDENTITY_ABOVE + ln2/2 so that k = 0 wherever z > 0 (asserted below).
SP_TAB_SHIFT = 45.0
SP_TAB_LEN = 728
#: expm1(d) = d + d**2 * (SP_EXPM1_C[0] + SP_EXPM1_C[1]*d + ...): Taylor 1/(n+2)!, first omitted
#: term d**9/9! < 2**-58 relative to d; expm1 enters the result scaled by <= |d| (< 2**-63).
SP_EXPM1_C = EXP_C[:7]
#: log1p(w) = w + w**2 * (SP_LOG1P_C[0] + ...): Taylor (-1)**(n+1)/(n+2), for |w| <= 0.016
#: (sigmoid <= 1/2 times expm1(1/32)): first omitted term w**9/9 < 2**-56.9, 0.07 ulp of L ~ 0.68
#: where w is largest (a -> 0); where a is far below 0, w/L <= |d| and the terms vanish faster.
SP_LOG1P_C = tuple((-1.0) ** (n + 1) / (n + 2) for n in range(7))
# the reduction's invariants: k = 0 for every z in (0, IDENTITY_ABOVE), and j < SP_TAB_LEN
assert SP_TAB_SHIFT - math.log(2) / 2 > IDENTITY_ABOVE
assert round(SP_TAB_SCALE * (SP_TAB_SHIFT + math.log(2) / 2)) < SP_TAB_LEN - 1


def generated_tables() -> dict[str, tuple[float, ...]]:
    """The float64 softplus/sigmoid table at a_j = -j/SP_TAB_SCALE, j < SP_TAB_LEN: ``SP_L_HI`` +
    ``SP_L_LO`` = log1p(exp(a_j)) and ``SP_SIGMA`` + ``SP_SIGMA_LO`` = sigmoid(a_j), each part
    correctly rounded (hi of the value, lo of the rest).

    Computed with the standard library's decimal module at 80 digits (~70 ms): e**a_j is as
    small as 2**-66, so 1 + e**a_j needs ~20 more digits than the 32 that L_HI + L_LO carry.
    Not at import: setup.py writes the tables into ``_cy/_constants.h`` at build time, and
    ``_nbkernels`` calls this when the Numba backend is first used.
    """
    import decimal  # noqa: PLC0415 - only build time and the Numba backend's first use

    hi, lo, sigma, sigma_lo = [], [], [], []
    with decimal.localcontext(decimal.Context(prec=80)):
        for j in range(SP_TAB_LEN):
            t = (decimal.Decimal(-j) / SP_TAB_SCALE).exp()
            value = (1 + t).ln()
            hi.append(float(value))  # float(Decimal) rounds correctly
            lo.append(float(value - decimal.Decimal(hi[-1])))
            sig = t / (1 + t)
            sigma.append(float(sig))
            sigma_lo.append(float(sig - decimal.Decimal(sigma[-1])))
    return {"SP_L_HI": tuple(hi), "SP_L_LO": tuple(lo), "SP_SIGMA": tuple(sigma),
            "SP_SIGMA_LO": tuple(sigma_lo)}


# ---- float32 evaluated in float32 (softplus/grad/backward, beta == 1, both backends, FMA CPUs) --
# exp(a) = 2**k * (v_hi + v_lo) with float-float corrections, log1p(e) = 2*atanh(e / (2 + e)) with
# the quotient kept as q + q_lo, then max(z, 0) + 2q + tail with an exact two-sum: max error
# 0.71 ulp for normal results, 0.82 ulp for subnormal ones (exhaustive over all 2**32 floats,
# tests/test_accuracy.py), at ~0.6x the time of the float64 evaluation (GCC: 1.04 vs 1.65 ns/element,
# one core, n = 1e6).  k*F32_LN2_HI need not be exact: the FMA in r = a - k*F32_LN2_HI rounds
# once and the exact difference fits 24 bits for |a| <= 104.


def _f32(v: float) -> float:
    """v rounded to the nearest float32 (kept as a Python float: the C header and Numba share it)."""
    return struct.unpack("f", struct.pack("f", v))[0]


F32_INV_LN2 = _f32(1.0 / math.log(2.0))
#: 1.5 * 2**23: adding it rounds a float32 of magnitude < 2**22 to an integer.
F32_ROUND_SHIFT = float.fromhex("0x1.8p23")
#: ln2 as float32 plus the rest (ln2 - F32_LN2_HI from the double-double LN2_HI + LN2_LO).
F32_LN2_HI = _f32(LN2_HI + LN2_LO)
F32_LN2_LO = _f32((LN2_HI - F32_LN2_HI) + LN2_LO)
#: exp(-104) < 2**-150 rounds to 0 in float32, and k >= -151 keeps every scaling below in range.
F32_EXP_ARG_MIN = -104.0
#: exp(r) - 1 - r = r**2 * (EXP_CF32[0] + ...): the first 6 Taylor terms (omitted r**8/8! < 2**-27
#: for |r| <= ln2/2), rounded to float32.
EXP_CF32 = tuple(_f32(c) for c in EXP_C[:6])
#: atanh(q)/q - 1 = q**2 * (LOG_CF32[0] + ...) for q = e/(2 + e) <= 1/3: 7 terms (omitted
#: q**16/17 < 2**-29), rounded to float32.
LOG_CF32 = tuple(_f32(c) for c in LOG_C[:7])
#: exp results below 2**-125 (subnormal float32) are scaled as v_hi * 2**(k + F32_SUB_SCALE_EXP)
#: (normal) times 2**-F32_SUB_SCALE_EXP, which rounds once.
F32_SUB_SCALE_EXP = 64
#: No subnormal intermediates: an Intel core takes a microcode assist (~150 cycles) for every vector
#: instruction with a subnormal or underflowing result (measured on the CI machine's Xeon:
#: softplus float32 at x in [-60, -40] ran 17x slower than at [-5, 5], 12 ns/element at x = -1e9).
#: Only results that are themselves subnormal (x in (-104, -87.3)) still go through them.
#: - Where e = exp(-|x|) < F32_TINY the float32 kernels return e rounded once (softplus of x < 0;
#:   sigmoid of x < 0): log1p(e) = e(1 - e/2) and e/(1 + e) differ from e by < 2**-40 relative,
#:   2**-16 of the final rounding's half ulp.
F32_TINY = float.fromhex("0x1p-40")
#: - The float-float exp (e_hi, e_lo) is scaled by 2**max(k, F32_SCALE_MIN_EXP): it serves only
#:   where e >= F32_TINY (so k >= -40 there), and below it stays near 2**-40, far from subnormal.
F32_SCALE_MIN_EXP = -40
#: - The atanh tail uses u = max(q, F32_TAIL_Q_MIN)**2: q*u and q_lo*u then stay normal for
#:   q >= F32_TINY/3; where q < 2**-30 the tail's share of the result is < 2**-60 either way.
F32_TAIL_Q_MIN = float.fromhex("0x1p-30")

# ---- the plain range (both backends' contiguous loops, beta == 1) ----------------------------
# The loops take the inputs in blocks of PLAIN_BLOCK: where every x of a block lies in
# (PLAIN_MIN_<dtype>, min(IDENTITY_ABOVE, threshold)) -- no NaN, no inf -- the block runs the
# kernel with its edge handling compiled out (the "plain" variant, edges = 0 in
# kernels.h/_nbkernels): no once-rounded subnormal path, no 2**k scaling, no NaN/identity/
# threshold selects, which are all no-ops there, so the results are bitwise the same
# (tests/test_accuracy.py checks it). Any other block runs the full kernel.
# How a block is tested (FSP_PLAIN_BLOCKS in fsp_variant.h, _numba._ser_softplus): the plain
# loop tests each x as it goes (a compare and an OR per vector). When the block before passed
# and the block's inputs do not share memory with out, a block goes straight into the plain loop,
# and if it fails, it is computed again with the full kernel (the float64 plain reduction bounds
# its table index, so any input is safe to run through it; those results are overwritten).
# Otherwise a scan of the block decides first: after a failing block, so data mostly outside the
# range is not computed twice, and in place in C (numba reads an in-place block from a copy).
# Measured: blocks of 1024 (C harness, AVX-512, one core, n = 1e5, x in [-10, 10]: float32
# softplus 1.12-1.16 -> 0.84-0.90 ns/element with blocks of 1024 or 4096; 256: 1.12-1.17, the
# branch and the test's reduction are paid too often). Testing in the plain loop rather than
# scanning every block first (x = 5*N(0,1), n = 1e7, ratio to ReLU, medians of 3-4 runs of the
# library before and after, alternating; runs of the same code differ by up to 15% here):
# cython float64 softplus one thread 1.80-2.07 -> 1.56-1.70, all cores 1.00-1.45 -> 0.89-0.95;
# numba float32 softplus one thread 2.06-2.29 -> 1.70-1.79, grad and backward all cores
# 0.87-1.24 -> 0.72-0.87. The scan, a pass of loads ahead of the arithmetic, waits on memory that
# the plain loop overlaps with its arithmetic.
PLAIN_BLOCK = 1024
#: 1: the C loops test the range inside the plain loop (above); 0: they scan every block first.
#: float32 keeps the scan: GCC accumulates the test through integer vectors (objdump: the
#: AVX-512 softplus loop grew from 138 to 162 instructions per 32 elements), which cost 10-16%
#: where the data sit in cache (one thread, n = 1e5: softplus 3.99 -> 4.37x ReLU, grad 2.85 ->
#: 3.31x; 1e6: 3.11 -> 3.42x) for 2% at n = 1e7 on one thread. LLVM keeps the test in mask
#: registers (numba: float32 one thread 1e5 4.16 -> 4.25, 1e6 3.48 -> 3.07, 1e7 2.16 -> 1.78):
#: the numba loops always test inside. (A fused C float32 loop would also need the plain kernel
#: to bound its exp's k before the int conversion, undefined in C for a NaN or huge x; LLVM's
#: fptosi only gives a poison value there, stored and then overwritten.)
C_PLAIN_FUSED_F32 = 0
C_PLAIN_FUSED_F64 = 1
#: float32 (softplus, sigmoid): e = exp(-|x|) > exp(-27) = 1.9e-12 stays above F32_TINY = 2**-40,
#: so the once-rounded path is never chosen, and k >= -39 > F32_SCALE_MIN_EXP: no clamp acts.
PLAIN_MIN_F32 = -27.0
#: float64 (softplus, sigmoid by table): above -SP_TAB_SHIFT the reduction's k is 0 (kd*ln2
#: subtracts 0, 2**k = 1), so the table kernels skip it.
PLAIN_MIN_F64 = -SP_TAB_SHIFT

#: float32(v) is +-inf for |v| at and above this (halfway between FLT_MAX and 2**128, ties to
#: even): a float32 threshold is taken as +-inf there, without a double -> float overflow.
F32_OVERFLOW = float.fromhex("0x1.ffffffp+127")

#: Below this many elements a call runs on one thread (the dispatcher for every backend, and the
#: Cython ufunc loops per inner-loop call). Measured (benchmarks/test_bench_threads.py
#: --bench-crossover, quiet machine, see _dispatch.py): 2 threads beat 1 from the first size the
#: loops split, 32768 (two blocks of 16384): 0.52-0.60x the serial time (cython), 0.61-0.86x
#: (numba on tbb), every function and dtype.
PARALLEL_MIN_N = 1 << 15

# the plain range's invariants (see PLAIN_BLOCK)
assert math.exp(PLAIN_MIN_F32) > 2 * F32_TINY and PLAIN_MIN_F32 / math.log(2) > F32_SCALE_MIN_EXP + 1
assert -PLAIN_MIN_F64 <= SP_TAB_SHIFT and -PLAIN_MIN_F32 < IDENTITY_ABOVE
